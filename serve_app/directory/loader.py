"""Loading the directory into PostgreSQL: regions, banks and branches, in one transaction per call.

Rows are streamed with ``COPY`` into a temporary table and merged with ``INSERT … ON CONFLICT``, so a
load can be repeated: the CNAPS file upserts by code, synthetic rows are replaced as a whole. Every load
bumps ``directory_meta.data_version``, which cache keys include.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from serve_app.directory.banks import ALIASES, category_name
from serve_app.directory.gazetteer import Gazetteer
from serve_app.directory.records import BranchRecord, demo_cnaps_path, read_cnaps
from serve_app.directory.synthetic import synthetic_branches


@dataclass(frozen=True)
class LoadReport:
    rows_read: int
    duplicates: int
    branches_loaded: int
    synthetic_loaded: int
    data_version: int


async def load_regions(conn: asyncpg.Connection, gazetteer: Gazetteer) -> int:
    rows = [(r.adcode, r.level, r.name, r.short, r.parent or None, list(r.aliases)) for r in gazetteer.regions]
    await conn.executemany(
        """INSERT INTO regions (adcode, level, name, short_name, parent_adcode, aliases)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (level, adcode) DO UPDATE
           SET name = EXCLUDED.name, short_name = EXCLUDED.short_name,
               parent_adcode = EXCLUDED.parent_adcode, aliases = EXCLUDED.aliases""",
        rows,
    )
    return len(rows)


async def upsert_banks(conn: asyncpg.Connection, records: Iterable[BranchRecord]) -> None:
    """Insert the institutions the records name; the class is the most common code prefix."""
    classes: dict[str, Counter] = defaultdict(Counter)
    for record in records:
        classes[record.bank_name][record.bank_code] += 1
    rows = []
    for name, counter in sorted(classes.items()):
        bank_code = counter.most_common(1)[0][0]
        rows.append((name, bank_code, category_name(bank_code), list(ALIASES.get(name, ()))))
    await conn.executemany(
        """INSERT INTO banks (name, category_code, category, aliases) VALUES ($1, $2, $3, $4)
           ON CONFLICT (name) DO UPDATE SET aliases = EXCLUDED.aliases""",
        rows,
    )


async def upsert_branches(conn: asyncpg.Connection, records: list[BranchRecord]) -> None:
    await upsert_banks(conn, records)
    await conn.execute("CREATE TEMPORARY TABLE branches_staging (LIKE branches) ON COMMIT DROP")
    await conn.copy_records_to_table(
        "branches_staging", records=[r.as_row() for r in records], columns=BranchRecord.COLUMNS
    )
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in BranchRecord.COLUMNS if c != "code")
    await conn.execute(
        f"INSERT INTO branches SELECT * FROM branches_staging ON CONFLICT (code) DO UPDATE SET {updates}"  # noqa: S608 - column names are constants
    )
    await conn.execute("DROP TABLE branches_staging")


def dedupe(records: Iterable[BranchRecord]) -> tuple[list[BranchRecord], int]:
    """Keep the first record of each code; return them and how many rows were dropped."""
    seen: dict[str, BranchRecord] = {}
    total = 0
    for record in records:
        total += 1
        seen.setdefault(record.code, record)
    return list(seen.values()), total - len(seen)


async def read_data_version(conn: asyncpg.Connection) -> int:
    """The directory's data version: bumped by every load, part of every cache key."""
    return int(await conn.fetchval("SELECT value FROM directory_meta WHERE key = 'data_version'"))


async def bump_data_version(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            """UPDATE directory_meta SET value = (value::bigint + 1)::text
               WHERE key = 'data_version' RETURNING value"""
        )
    )


async def load_directory(conn: asyncpg.Connection, cnaps_path: Path | None, synthetic: int = 0) -> LoadReport:
    """Load the gazetteer, a CNAPS file (if given) and ``synthetic`` generated branches, atomically.

    ``synthetic`` replaces any synthetic rows already present, so the table holds exactly that many.
    """
    async with conn.transaction():
        # Bulk work: the pool's per-statement timeout is for serving queries, not for loads.
        await conn.execute("SET LOCAL statement_timeout = 0")
        await load_regions(conn, Gazetteer.default())
        rows_read = duplicates = loaded = 0
        if cnaps_path is not None:
            records, duplicates = dedupe(read_cnaps(cnaps_path))
            rows_read, loaded = len(records) + duplicates, len(records)
            await upsert_branches(conn, records)
        if synthetic:
            await conn.execute("DELETE FROM branches WHERE source = 'synthetic'")
            taken = await conn.fetch("SELECT code, name FROM branches")
            generated = list(synthetic_branches(synthetic, {r["code"] for r in taken}, {r["name"] for r in taken}))
            await upsert_branches(conn, generated)
        version = await bump_data_version(conn)
    return LoadReport(rows_read, duplicates, loaded, synthetic, version)


async def directory_stats(conn: asyncpg.Connection) -> dict:
    """Counts and facts an operator wants to see (``serve-app db stats``)."""
    by_source = {r["source"]: r["n"] for r in await conn.fetch(
        "SELECT source, count(*) AS n FROM branches GROUP BY source ORDER BY source")}  # fmt: skip
    return {
        "branches": sum(by_source.values()),
        "branches_by_source": by_source,
        "banks": await conn.fetchval("SELECT count(*) FROM banks"),
        "regions": await conn.fetchval("SELECT count(*) FROM regions"),
        "data_version": await read_data_version(conn),
        "database_size": await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))"),
        "ctype": await conn.fetchval("SELECT datctype FROM pg_database WHERE datname = current_database()"),
        "migrations": [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations ORDER BY version")],
    }


async def load_demo_if_empty(conn: asyncpg.Connection) -> LoadReport | None:
    """Load the shipped sample when the directory has no branches (first run on embedded defaults)."""
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM branches)"):
        return None
    return await load_directory(conn, demo_cnaps_path())
