"""``serve-app``: the command line.

Where ``SERVE_APP_DATABASE_URL`` is unset, commands start the embedded PostgreSQL under
``SERVE_APP_HOME`` for their duration (a second run restarts it on the same data, in ~0.1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from serve_app.db.migrate import apply_migrations
from serve_app.db.pool import check_trigram_locale, connect_admin
from serve_app.directory.loader import directory_stats, load_directory
from serve_app.directory.records import demo_cnaps_path
from serve_app.embedded import EmbeddedPostgres
from serve_app.settings import Settings


@contextlib.asynccontextmanager
async def admin_connection(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """An admin connection to the configured database, or to the embedded one (started and stopped here)."""
    with contextlib.ExitStack() as stack:
        url = settings.database_url
        if url is None:
            postgres = EmbeddedPostgres(settings.home / "postgres")
            url = await asyncio.to_thread(postgres.start)
            stack.callback(postgres.stop)
        conn = await connect_admin(url)
        try:
            yield conn
        finally:
            await conn.close()


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serve-app", description="Bank-branch query service.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="database: migrations, directory loads, statistics")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("migrate", help="apply pending schema migrations").set_defaults(run=_db_migrate)
    load = db_commands.add_parser("load", help="load the gazetteer, banks and a CNAPS branch file")
    load.add_argument("--file", type=Path, help="CNAPS CSV (default: the shipped real sample)")
    load.add_argument("--no-sample", action="store_true", help="load no CNAPS file (gazetteer/synthetic only)")
    load.add_argument("--synthetic", type=int, default=0, metavar="N",
                      help="replace synthetic branches with N deterministic ones (scale tests)")  # fmt: skip
    load.set_defaults(run=_db_load)
    db_commands.add_parser("stats", help="print directory statistics as JSON").set_defaults(run=_db_stats)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if getattr(args, "synthetic", 0) < 0:
        print("serve-app: --synthetic must be >= 0", file=sys.stderr)
        return 2
    try:
        settings = Settings()
        return asyncio.run(args.run(settings, args))
    except (OSError, RuntimeError, ValueError, asyncpg.PostgresError) as exc:
        print(f"serve-app: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
