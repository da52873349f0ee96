"""``serve-app db …`` and the database every command runs on: the configured one, or the embedded server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from serve_app.db.migrate import apply_migrations
from serve_app.db.pool import check_trigram_locale, connect_admin
from serve_app.directory.loader import directory_stats, load_directory
from serve_app.directory.records import demo_cnaps_path
from serve_app.ops.embedded import EmbeddedPostgres
from serve_app.settings import Settings


@contextlib.asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """The configured database URL, or the embedded server's (started here and stopped on exit)."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    postgres = EmbeddedPostgres(settings.home / "postgres")
    url = await asyncio.to_thread(postgres.start)
    try:
        yield url
    finally:
        await asyncio.to_thread(postgres.stop)


@contextlib.asynccontextmanager
async def admin_connection(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """An admin connection to the configured database, or to the embedded one."""
    async with database_url(settings) as url:
        conn = await connect_admin(url)
        try:
            yield conn
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def prepared_database_url(settings: Settings) -> AsyncIterator[str]:
    """``database_url``, with pending migrations applied first."""
    async with database_url(settings) as url:
        conn = await connect_admin(url)
        try:
            await prepare_database(conn)
        finally:
            await conn.close()
        yield url


async def prepare_database(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations and check the locale; return the migrations applied now."""
    applied = await apply_migrations(conn)
    await check_trigram_locale(conn)
    return applied


async def _db_migrate(settings: Settings, args: argparse.Namespace) -> int:
    async with admin_connection(settings) as conn:
        applied = await prepare_database(conn)
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


async def _db_load(settings: Settings, args: argparse.Namespace) -> int:
    path = None if args.no_sample else (args.file or demo_cnaps_path())
    started = time.perf_counter()
    async with admin_connection(settings) as conn:
        await prepare_database(conn)
        report = await load_directory(conn, path, synthetic=args.synthetic)
    elapsed = time.perf_counter() - started
    print(
        f"loaded {report.branches_loaded} branches from {path or 'no file'} "
        f"({report.rows_read} rows, {report.duplicates} duplicate codes merged), "
        f"{report.synthetic_loaded} synthetic; data version {report.data_version}; {elapsed:.1f}s"
    )
    return 0


async def _db_stats(settings: Settings, args: argparse.Namespace) -> int:
    async with admin_connection(settings) as conn:
        await prepare_database(conn)
        stats = await directory_stats(conn)
    print(json.dumps(stats, ensure_ascii=False, indent=2))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    db = commands.add_parser("db", help="database: migrations, directory loads, statistics")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("migrate", help="apply pending schema migrations").set_defaults(run=_db_migrate)
    load = db_commands.add_parser("load", help="load the gazetteer, banks and a CNAPS branch file")
    load.add_argument("--file", type=Path, help="CNAPS CSV (default: the shipped real sample)")
    load.add_argument("--no-sample", action="store_true", help="load no CNAPS file (gazetteer/synthetic only)")
    load.add_argument("--synthetic", type=_non_negative, default=0, metavar="N",
                      help="replace synthetic branches with N deterministic ones (scale tests)")  # fmt: skip
    load.set_defaults(run=_db_load)
    db_commands.add_parser("stats", help="print directory statistics as JSON").set_defaults(run=_db_stats)


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value
