"""Migrations apply in order, once, and refuse edited history."""

from __future__ import annotations

import asyncio

import pytest

from serve_app.db.migrate import MigrationError, apply_migrations, available_migrations
from serve_app.db.pool import connect_admin


async def test_migrations_apply_once_and_are_recorded(empty_database_url: str) -> None:
    conn = await connect_admin(empty_database_url)
    try:
        first = await apply_migrations(conn)
        second = await apply_migrations(conn)
        recorded = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        indexes = {
            r["indexname"] for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'branches'")
        }
    finally:
        await conn.close()
    assert first == [m.name for m in available_migrations()]
    assert second == []
    assert [r["name"] for r in recorded] == first
    assert {"branches_trgm", "branches_city_district", "branches_district"} <= indexes


async def test_concurrent_migrators_apply_each_migration_once(empty_database_url: str) -> None:
    conns = [await connect_admin(empty_database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in conns))
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        for conn in conns:
            await conn.close()
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(m.name for m in available_migrations())
    assert count == len(available_migrations())


async def test_edited_migration_is_refused(empty_database_url: str) -> None:
    conn = await connect_admin(empty_database_url)
    try:
        await apply_migrations(conn)
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(conn)
    finally:
        await conn.close()
