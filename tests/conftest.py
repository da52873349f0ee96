"""Fixtures: one real embedded PostgreSQL and one real Valkey per test session, on loopback.

Each test module that needs a directory gets its own database on that server, so modules cannot see
each other's writes. Nothing here is mocked.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from serve_app.db.migrate import apply_migrations
from serve_app.db.pool import connect_admin, create_pool
from serve_app.db.redis_client import create_redis
from serve_app.directory.loader import load_directory
from serve_app.directory.records import demo_cnaps_path
from serve_app.ops.embedded import EmbeddedPostgres, EmbeddedRedis

SCALE_SYNTHETIC_ROWS = 150_000


@pytest.fixture(scope="session")
def services_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve-app-home")


@pytest.fixture(scope="session")
def embedded_postgres(services_home: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(services_home / "postgres")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def embedded_redis(services_home: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(services_home / "valkey")
    server.start()
    yield server
    server.stop()


async def create_database(server: EmbeddedPostgres, prefix: str, **options: str) -> str:
    """Create a fresh database on the embedded server; return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(server.url.rsplit("/", 1)[0] + "/postgres")
    try:
        extra = "".join(f" {key} '{value}'" for key, value in options.items())
        await conn.execute(f'CREATE DATABASE "{name}"{extra}')
    finally:
        await conn.close()
    return server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
async def empty_database_url(embedded_postgres: EmbeddedPostgres) -> str:
    """A brand-new database (no migrations), one per test."""
    return await create_database(embedded_postgres, "empty")


async def loaded_database(server: EmbeddedPostgres, prefix: str, synthetic: int = 0) -> str:
    """A fresh database on the embedded server, migrated, with the sample directory (and ``synthetic`` rows)."""
    url = await create_database(server, prefix)
    conn = await connect_admin(url)
    try:
        await apply_migrations(conn)
        await load_directory(conn, demo_cnaps_path(), synthetic=synthetic)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return url


@pytest.fixture(scope="session")
async def sample_database_url(embedded_postgres: EmbeddedPostgres) -> str:
    """The real CNAPS sample, migrated and loaded (tests must not change its directory tables)."""
    return await loaded_database(embedded_postgres, "sample", synthetic=0)


@pytest.fixture(scope="session")
async def scale_database_url(embedded_postgres: EmbeddedPostgres) -> str:
    """The sample plus 150k synthetic branches: the size query plans must hold at (read-only)."""
    return await loaded_database(embedded_postgres, "scale", synthetic=SCALE_SYNTHETIC_ROWS)


@pytest.fixture(scope="session")
async def sample_pool(sample_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(sample_database_url)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def scale_pool(scale_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(scale_database_url)
    yield pool
    await pool.close()


@pytest.fixture
async def redis_client(embedded_redis: EmbeddedRedis):
    client = create_redis(embedded_redis.url)
    yield client
    await client.aclose()


@pytest.fixture(scope="module", autouse=True)
def _floating_point_mode_restored() -> Iterator[None]:
    """HFEngine turns on flush-to-zero for its process (denormals slow CPU generation): in this process,
    a later module must not inherit it (Hypothesis refuses to generate floats under it)."""
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_flush_denormal(False)


#: Fixtures that build something big: a test using one is in the full suite only (``-m "not slow"``).
SLOW_FIXTURES = frozenset({"scale_database_url", "scale_pool"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
