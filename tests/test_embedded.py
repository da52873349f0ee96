"""The embedded servers are real, restart on their data, and the locale guard catches a C ctype."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from serve_app.db.pool import DatabaseLocaleError, check_trigram_locale
from serve_app.ops.embedded import EmbeddedPostgres, EmbeddedRedis, services
from serve_app.settings import Settings
from tests.conftest import create_database


async def test_postgres_restart_keeps_data_and_skips_initdb(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    url = server.start()
    try:
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
        await conn.close()
    finally:
        server.stop()
    version_file = tmp_path / "pg" / "data" / "PG_VERSION"
    initialised_at = version_file.stat().st_mtime_ns

    url = server.start()
    try:
        conn = await asyncpg.connect(url)
        assert await conn.fetchval("SELECT v FROM kept") == "still here"
        assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
        await conn.close()
    finally:
        server.stop()
    assert version_file.stat().st_mtime_ns == initialised_at


async def test_second_manager_attaches_to_a_running_server(embedded_postgres: EmbeddedPostgres) -> None:
    other = EmbeddedPostgres(embedded_postgres.root)
    assert other.start() == embedded_postgres.url
    other.stop()  # did not start it, so must not stop it
    conn = await asyncpg.connect(embedded_postgres.url)
    assert await conn.fetchval("SELECT 1") == 1
    await conn.close()


async def test_postgres_database_has_utf8_ctype_and_pg_trgm(embedded_postgres: EmbeddedPostgres) -> None:
    conn = await asyncpg.connect(embedded_postgres.url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        await check_trigram_locale(conn)
        assert await conn.fetchval("SELECT similarity('华夏银行江油西山支行', '华夏银行江油西山支行')") == 1.0
    finally:
        await conn.close()


async def test_locale_guard_rejects_c_ctype(embedded_postgres: EmbeddedPostgres) -> None:
    url = await create_database(embedded_postgres, "cctype", LC_CTYPE="C", LC_COLLATE="C", TEMPLATE="template0")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE EXTENSION pg_trgm")
        with pytest.raises(DatabaseLocaleError, match="ctype is 'C'"):
            await check_trigram_locale(conn)
    finally:
        await conn.close()


async def test_redis_round_trip(redis_client) -> None:
    await redis_client.set("serve-app:test", "值", ex=10)
    assert (await redis_client.get("serve-app:test")).decode() == "值"
    info = await redis_client.info("server")
    assert info["tcp_port"] > 0


def test_services_start_only_what_is_not_configured(tmp_path: Path, embedded_postgres: EmbeddedPostgres) -> None:
    settings = Settings(home=tmp_path, database_url=embedded_postgres.url)
    with services(settings) as urls:
        assert urls.database_url == embedded_postgres.url
        assert urls.redis_url.startswith("redis://127.0.0.1:")
        redis_root = tmp_path / "valkey"
        assert redis_root.exists()
    assert not (tmp_path / "postgres").exists()


def test_redis_stop_frees_the_port(tmp_path: Path) -> None:
    import socket

    server = EmbeddedRedis(tmp_path)
    server.start()
    port = server.port
    server.stop()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
