"""Loading the directory into PostgreSQL: regions, banks and branches, in one transaction per call.

A CNAPS file is a snapshot: the whole directory as of a date. Its rows are streamed with ``COPY`` into
a temporary table and merged with ``INSERT … ON CONFLICT``; codes the file no longer has are *retired*
(kept, with the date and version, never deleted), codes that come back are active again, and every change
is written to ``directory_changes`` (``serve_app.directory.snapshots`` decides what changed). Synthetic
rows are replaced as a whole and never retired by a snapshot. Every load is one transaction under an
advisory lock, is recorded in ``directory_loads``, and bumps ``directory_meta.data_version`` (cache keys
include it) and ``as_of``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg

from serve_app.directory.banks import ALIASES, category_name
from serve_app.directory.gazetteer import Gazetteer
from serve_app.directory.records import BranchRecord, demo_cnaps_path, read_cnaps
from serve_app.directory.snapshots import (
    DEFAULT_MAX_RETIRE_SHARE,
    FACT_FIELDS,
    Facts,
    SnapshotDiff,
    check_retire_share,
    diff_snapshots,
    snapshot_facts,
)
from serve_app.directory.synthetic import synthetic_branches

#: Serialises directory loads (bootstrap has its own lock, the migrator another).
LOAD_LOCK_KEY = 0x5E_7E_A9_03
#: Sent (with the new data version) when a load commits: replicas move to it at once instead of at their
#: next poll, so no replica keeps answering from the snapshot before.
LOADED_CHANNEL = "directory_loaded"


@dataclass(frozen=True)
class LoadReport:
    rows_read: int
    duplicates: int
    branches_loaded: int
    synthetic_loaded: int
    data_version: int
    as_of: date | None = None
    counts: dict[str, int] = field(default_factory=dict)  # changes by kind (see ``snapshots``)


@dataclass(frozen=True)
class LoadOptions:
    """How a CNAPS file is taken: the whole directory as of ``as_of`` (default: today, UTC), or a
    ``partial`` update (upserts only); ``max_retire_share`` guards against truncated files."""

    as_of: date | None = None
    partial: bool = False
    allow_mass_retire: bool = False
    max_retire_share: float = DEFAULT_MAX_RETIRE_SHARE


class OlderSnapshotRefused(ValueError):
    """A snapshot dated before the one the directory is already at."""


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


async def upsert_branches(conn: asyncpg.Connection, records: list[BranchRecord], version: int | None = None) -> None:
    """Insert new codes (``added_version`` = ``version``) and update the ones whose fields changed; rows
    that are the same are not written (a reload rewrites nothing, and GIN indexes are costly to update)."""
    await upsert_banks(conn, records)
    await conn.execute("CREATE TEMPORARY TABLE branches_staging (LIKE branches) ON COMMIT DROP")
    await conn.copy_records_to_table(
        "branches_staging", records=[r.as_row() for r in records], columns=BranchRecord.COLUMNS
    )
    columns = ", ".join(BranchRecord.COLUMNS)
    fields = [c for c in BranchRecord.COLUMNS if c != "code"]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in fields)
    old = ", ".join(f"branches.{c}" for c in fields)
    new = ", ".join(f"EXCLUDED.{c}" for c in fields)
    await conn.execute(
        f"""INSERT INTO branches ({columns}, added_version) SELECT {columns}, $1 FROM branches_staging
            ON CONFLICT (code) DO UPDATE SET {updates} WHERE ({old}) IS DISTINCT FROM ({new})""",  # noqa: S608 - constants
        version,
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


async def read_directory_state(conn: asyncpg.Connection) -> tuple[int, date | None]:
    """(data version, as-of date of the snapshot) — what every answer says it was answered from."""
    rows = {r["key"]: r["value"] for r in await conn.fetch(
        "SELECT key, value FROM directory_meta WHERE key IN ('data_version', 'as_of')")}  # fmt: skip
    as_of = rows.get("as_of")
    return int(rows["data_version"]), date.fromisoformat(as_of) if as_of else None


async def load_directory(
    conn: asyncpg.Connection, cnaps_path: Path | None, synthetic: int = 0, options: LoadOptions | None = None
) -> LoadReport:
    """Load the gazetteer, a CNAPS snapshot (if given) and ``synthetic`` generated branches, atomically.

    ``synthetic`` replaces any synthetic rows already present, so the table holds exactly that many.
    Raises ``MassRetireRefused`` or ``OlderSnapshotRefused`` (nothing written) when the file must not be
    taken as the directory.
    """
    options = options or LoadOptions()
    async with conn.transaction():
        # Bulk work: the pool's per-statement timeout is for serving queries, not for loads.
        await conn.execute("SET LOCAL statement_timeout = 0")
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOAD_LOCK_KEY)
        previous_as_of = (await read_directory_state(conn))[1]
        as_of = options.as_of or (previous_as_of if cnaps_path is None else None) or datetime.now(UTC).date()
        if cnaps_path is not None and not options.partial and previous_as_of and as_of < previous_as_of:
            raise OlderSnapshotRefused(
                f"the directory is already as of {previous_as_of}; a snapshot as of {as_of} is older"
            )
        await load_regions(conn, Gazetteer.default())
        rows_read = duplicates = loaded = 0
        diff = SnapshotDiff()
        records: list[BranchRecord] = []
        if cnaps_path is not None:
            records, duplicates = dedupe(read_cnaps(cnaps_path))
            rows_read, loaded = len(records) + duplicates, len(records)
            diff = diff_snapshots(*await _directory_facts(conn), snapshot_facts(records), partial=options.partial)
            check_retire_share(diff, options.max_retire_share, options.allow_mass_retire)
        version = await bump_data_version(conn)
        if records:
            await upsert_branches(conn, records, version)
            await _apply(conn, diff, version, as_of)
        if synthetic:
            await conn.execute("DELETE FROM branches WHERE source = 'synthetic'")
            taken = await conn.fetch("SELECT code, name FROM branches")
            generated = list(synthetic_branches(synthetic, {r["code"] for r in taken}, {r["name"] for r in taken}))
            await upsert_branches(conn, generated, version)
        mode = "synthetic" if cnaps_path is None else "partial" if options.partial else "snapshot"
        held = await branch_counts(conn)
        counts = diff.counts() | {"active": held["active"], "retired_total": held["retired"]}
        await conn.execute(
            """INSERT INTO directory_loads (data_version, as_of, mode, source, sha256, rows_read, counts)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            version, as_of, mode, cnaps_path.name if cnaps_path else "synthetic",
            file_sha256(cnaps_path) if cnaps_path else None, rows_read, json.dumps(counts),
        )  # fmt: skip
        await _record_changes(conn, diff, version, as_of)
        await conn.execute(
            """INSERT INTO directory_meta (key, value) VALUES ('as_of', $1)
               ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value""",
            as_of.isoformat(),
        )
        await conn.execute("SELECT pg_notify($1, $2)", LOADED_CHANNEL, str(version))
    return LoadReport(rows_read, duplicates, loaded, synthetic, version, as_of, diff.counts())


async def _directory_facts(conn: asyncpg.Connection) -> tuple[dict[str, Facts], dict[str, Facts]]:
    """The directory's codes (synthetic rows aside) with their tracked fields: (active, retired)."""
    rows = await conn.fetch(
        f"SELECT code, retired_on, {', '.join(FACT_FIELDS)} FROM branches WHERE source <> 'synthetic'"  # noqa: S608
    )
    active: dict[str, Facts] = {}
    retired: dict[str, Facts] = {}
    for row in rows:
        facts = {name: row[name] for name in FACT_FIELDS}
        (retired if row["retired_on"] is not None else active)[row["code"]] = facts
    return active, retired


async def _apply(conn: asyncpg.Connection, diff: SnapshotDiff, version: int, as_of: date) -> None:
    """Mark what the snapshot retired and returned (its rows are already upserted)."""
    await conn.execute(
        "UPDATE branches SET retired_on = $2, retired_version = $3 WHERE code = ANY($1::text[])",
        diff.codes("retired"), as_of, version,
    )  # fmt: skip
    await conn.execute(
        "UPDATE branches SET retired_on = NULL, retired_version = NULL WHERE code = ANY($1::text[])",
        diff.codes("returned"),
    )


async def _record_changes(conn: asyncpg.Connection, diff: SnapshotDiff, version: int, as_of: date) -> None:
    if not diff.changes:
        return
    records = [
        (version, as_of, change.kind, change.code, change.bank_name, change.city, _json(change.old), _json(change.new))
        for change in diff.changes
    ]
    await conn.copy_records_to_table(
        "directory_changes",
        records=records,
        columns=("data_version", "as_of", "kind", "code", "bank_name", "city", "old", "new"),
    )


def _json(value: dict | None) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


async def branch_counts(conn: asyncpg.Connection) -> dict[str, int]:
    """The directory's codes by state: ``active`` (payable) and ``retired`` (left a snapshot)."""
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE retired_on IS NULL) AS active, count(retired_on) AS retired FROM branches"
    )
    return {"active": row["active"], "retired": row["retired"]}


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file (read in blocks)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


async def directory_stats(conn: asyncpg.Connection) -> dict:
    """Counts and facts an operator wants to see (``serve-app db stats``)."""
    data_version, as_of = await read_directory_state(conn)
    by_source = {r["source"]: r["n"] for r in await conn.fetch(
        "SELECT source, count(*) AS n FROM branches GROUP BY source ORDER BY source")}  # fmt: skip
    return {
        "branches": sum(by_source.values()),
        "branches_by_source": by_source,
        "banks": await conn.fetchval("SELECT count(*) FROM banks"),
        "regions": await conn.fetchval("SELECT count(*) FROM regions"),
        **await branch_counts(conn),
        "data_version": data_version,
        "as_of": str(as_of),
        "database_size": await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))"),
        "ctype": await conn.fetchval("SELECT datctype FROM pg_database WHERE datname = current_database()"),
        "migrations": [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations ORDER BY version")],
    }


async def load_demo_if_empty(conn: asyncpg.Connection) -> LoadReport | None:
    """Load the shipped sample when the directory has no branches (first run on embedded defaults)."""
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM branches)"):
        return None
    return await load_directory(conn, demo_cnaps_path())
