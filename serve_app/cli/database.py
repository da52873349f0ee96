"""``serve-app db …`` and the database every command runs on: the configured one, or the embedded server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import asyncpg

from serve_app.config import RetentionPolicy
from serve_app.db.migrate import apply_migrations
from serve_app.db.pool import check_trigram_locale, connect_admin, create_pool
from serve_app.directory.loader import LoadOptions, directory_stats, load_directory
from serve_app.directory.records import demo_cnaps_path, read_cnaps
from serve_app.directory.snapshots import DEFAULT_MAX_RETIRE_SHARE, diff_snapshots, snapshot_facts
from serve_app.ops.embedded import EmbeddedPostgres
from serve_app.ops.retention import sweep
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
    options = LoadOptions(
        as_of=args.as_of,
        partial=args.partial,
        allow_mass_retire=args.allow_mass_retire,
        max_retire_share=args.max_retire_share,
    )
    started = time.perf_counter()
    async with admin_connection(settings) as conn:
        await prepare_database(conn)
        report = await load_directory(conn, path, synthetic=args.synthetic, options=options)
    elapsed = time.perf_counter() - started
    changes = ", ".join(f"{n} {kind}" for kind, n in report.counts.items() if n and kind != "unchanged")
    print(
        f"loaded {report.branches_loaded} branches from {path or 'no file'} "
        f"({report.rows_read} rows, {report.duplicates} duplicate codes merged), "
        f"{report.synthetic_loaded} synthetic; as of {report.as_of}, data version {report.data_version}"
        f"{'; ' + changes if changes else ''}; {elapsed:.1f}s"
    )
    return 0


async def _db_sweep(settings: Settings, args: argparse.Namespace) -> int:
    """``db sweep``: the retention sweep now (job workers run it every hour)."""
    policy = RetentionPolicy(query_log_days=args.query_log_days, job_days=args.job_days)
    async with database_url(settings) as url:
        pool = await create_pool(url, settings)
        try:
            deleted = await sweep(pool, policy)
        finally:
            await pool.close()
    print("another sweep is running" if deleted is None else json.dumps(deleted))
    return 0


def _db_diff(settings: Settings, args: argparse.Namespace) -> int:
    """``db diff OLD NEW``: what loading NEW over OLD would change, without a database."""
    diff = diff_snapshots(snapshot_facts(read_cnaps(args.old)), {}, snapshot_facts(read_cnaps(args.new)))
    counts = diff.counts()
    if args.json:
        changes = [vars(change) for change in diff.changes]
        report = {"counts": counts, "retire_share": round(diff.retire_share, 4), "changes": changes}
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print(" ".join(f"{kind}={n}" for kind, n in counts.items()) + f" retire_share={diff.retire_share:.2%}")
    for change in diff.changes[: args.limit]:
        print(f"{change.kind:8} {change.code} {change.bank_name} {change.city} {change.old or ''} → {change.new or ''}")
    if len(diff.changes) > args.limit:
        print(f"… {len(diff.changes) - args.limit} more (--limit, or --json for all)")
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
    load.add_argument(
        "--as-of",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="the date the file is the directory as of (default: today, UTC)",
    )
    load.add_argument(
        "--partial", action="store_true", help="an update of some codes: add and change them, retire nothing"
    )
    load.add_argument(
        "--allow-mass-retire",
        action="store_true",
        help="load a snapshot even if it retires more than --max-retire-share of the active codes",
    )
    load.add_argument(
        "--max-retire-share",
        type=float,
        default=DEFAULT_MAX_RETIRE_SHARE,
        metavar="SHARE",
        help="refuse a snapshot that retires more than this share of active codes (default 0.05)",
    )
    load.set_defaults(run=_db_load)
    diff = db_commands.add_parser("diff", help="what loading one CNAPS file over another would change (no database)")
    diff.add_argument("old", type=Path, help="CNAPS CSV: the directory before")
    diff.add_argument("new", type=Path, help="CNAPS CSV: the directory after")
    diff.add_argument("--json", action="store_true", help="the counts and every change as JSON")
    diff.add_argument("--limit", type=_non_negative, default=50, help="changes printed (default 50)")
    diff.set_defaults(run=_db_diff, blocking=True)
    db_commands.add_parser("stats", help="print directory statistics as JSON").set_defaults(run=_db_stats)
    defaults = RetentionPolicy()
    sweep_command = db_commands.add_parser("sweep", help="delete query-log rows and finished jobs past retention")
    sweep_command.add_argument("--query-log-days", type=int, default=defaults.query_log_days)
    sweep_command.add_argument("--job-days", type=int, default=defaults.job_days)
    sweep_command.set_defaults(run=_db_sweep)


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value
