"""Ordered SQL migrations, applied once each and recorded in ``schema_migrations``.

Files are ``NNNN_name.sql`` in ``serve_app/db/migrations``. Each is applied in its own transaction,
under an advisory lock so concurrent migrators (several replicas starting at once) apply it once.
A recorded migration whose file has changed since is an error: migrations are append-only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
#: Arbitrary constant shared by every migrator of this project.
_ADVISORY_LOCK_KEY = 0x5E_7E_A9_01


class MigrationError(RuntimeError):
    """Migrations cannot be applied safely."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The migrations shipped with the package, in order."""
    folder = resources.files("serve_app.db") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {versions}")
    return found


async def apply_migrations(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations; return the names applied now (empty when up to date)."""
    applied_now = []
    async with conn.transaction():
        # Under the lock: CREATE TABLE IF NOT EXISTS itself races between concurrent sessions.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADVISORY_LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        recorded = {
            row["version"]: row for row in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        }
        for migration in available_migrations():
            done = recorded.get(migration.version)
            if done is not None:
                if done["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.name} was changed after it was applied; add a new migration instead"
                    )
                continue
            async with conn.transaction():  # a savepoint per migration
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(migration.name)
    return applied_now
