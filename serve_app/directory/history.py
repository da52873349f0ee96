"""How current the directory is and what its loads changed: ``GET /api/v1/directory`` and
``GET /api/v1/directory/changes`` (written by ``directory.loader``, decided by ``directory.snapshots``).

``since`` is a data version (changes made by later loads) or a date (changes of snapshots as of a later
date): "what changed after the directory my file was answered from", whichever of the two the file says.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from serve_app.db.errors import DIRECTORY, database_errors
from serve_app.db.sql import where_clause
from serve_app.directory.loader import branch_counts, read_directory_state
from serve_app.directory.snapshots import ChangeKind
from serve_app.schemas import refuse_control_characters

MAX_PAGE_SIZE = 500
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class LoadOut(BaseModel):
    data_version: int
    as_of: date
    mode: str = Field(description="snapshot (the whole directory), partial (an update) or synthetic.")
    source: str
    sha256: str | None
    rows_read: int
    counts: dict[str, int] = Field(description="Codes new, retired, returned, renamed, moved, changed, unchanged.")
    loaded_at: datetime


class DirectoryInfo(BaseModel):
    """``GET /api/v1/directory``."""

    as_of: date | None = Field(description="The date the directory is a snapshot of: answers are as of it.")
    data_version: int
    active: int = Field(description="Codes in the latest snapshot: payable.")
    retired: int = Field(description="Codes that left a snapshot: kept for old results, never payable.")
    last_load: LoadOut | None


class ChangeQuery(BaseModel):
    """The query string of ``GET /api/v1/directory/changes``; empty filters are ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    since: str | None = Field(
        default=None, description="A data version (changes by later loads) or a date YYYY-MM-DD (later snapshots)."
    )
    bank: str | None = Field(default=None, max_length=64, description="Institution name or alias (工行).")
    city: str | None = Field(default=None, max_length=32)
    kind: ChangeKind | None = None
    page: int = Field(default=1, ge=1, le=100_000)
    page_size: int = Field(default=100, ge=1, le=MAX_PAGE_SIZE)

    @field_validator("bank", "city")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        return None if value is None else refuse_control_characters(value, "a filter")

    @field_validator("since")
    @classmethod
    def _version_or_date(cls, value: str | None) -> str | None:
        if not value:
            return None
        if value.isascii() and value.isdigit():
            return value
        if _DATE.match(value):
            date.fromisoformat(value)  # a ValueError names a date that does not exist
            return value
        raise ValueError("since is a data version (digits) or a date (YYYY-MM-DD)")


class ChangeOut(BaseModel):
    data_version: int
    as_of: date
    kind: ChangeKind
    code: str
    bank: str
    city: str
    old: dict[str, str | None] | None = Field(description="The changed fields before (none for a new code).")
    new: dict[str, str | None] | None = Field(description="And after (none for a retired code).")


class ChangePage(BaseModel):
    total: int
    page: int
    page_size: int
    items: list[ChangeOut]


_CLAUSES = {
    "version": "data_version > ${n}",
    "date": "as_of > ${n}",
    "bank": "bank_name = coalesce((SELECT name FROM banks WHERE name = ${n} OR ${n} = ANY(aliases) LIMIT 1), ${n})",
    "city": "city = ${n}",
    "kind": "kind = ${n}",
}


def change_statements(query: ChangeQuery) -> tuple[str, str, list[object]]:
    """(page statement, count statement, arguments): fixed clauses, bound values."""
    filters: dict[str, object] = {"bank": query.bank, "city": query.city, "kind": query.kind}
    if query.since is not None:
        if query.since.isdigit():
            filters["version"] = int(query.since)
        else:
            filters["date"] = date.fromisoformat(query.since)
    where, arguments = where_clause(_CLAUSES, filters)
    n = len(arguments)
    page = f"""SELECT data_version, as_of, kind, code, bank_name AS bank, city, old, new FROM directory_changes
               WHERE {where} ORDER BY data_version DESC, id LIMIT ${n + 1} OFFSET ${n + 2}"""  # noqa: S608
    count = f"SELECT count(*) FROM directory_changes WHERE {where}"  # noqa: S608 - fixed clauses, bound values
    return page, count, arguments


class DirectoryHistory:
    def __init__(self, pool: asyncpg.Pool, acquire_timeout_s: float | None = None):
        self.pool = pool
        self.acquire_timeout_s = acquire_timeout_s

    async def info(self) -> DirectoryInfo:
        with database_errors(DIRECTORY):
            async with self.pool.acquire(timeout=self.acquire_timeout_s) as conn:
                data_version, as_of = await read_directory_state(conn)
                load = await conn.fetchrow("SELECT * FROM directory_loads ORDER BY data_version DESC LIMIT 1")
                counts = await branch_counts(conn)
        last_load = None if load is None else LoadOut.model_validate({**load, "counts": _decoded(load["counts"])})
        return DirectoryInfo(as_of=as_of, data_version=data_version, last_load=last_load, **counts)

    async def changes(self, query: ChangeQuery) -> ChangePage:
        page, count, arguments = change_statements(query)
        offset = (query.page - 1) * query.page_size
        with database_errors(DIRECTORY):
            async with self.pool.acquire(timeout=self.acquire_timeout_s) as conn:
                total = await conn.fetchval(count, *arguments)
                rows = await conn.fetch(page, *arguments, query.page_size, offset)
        items = [
            ChangeOut.model_validate(dict(row) | {"old": _decoded(row["old"]), "new": _decoded(row["new"])})
            for row in rows
        ]
        return ChangePage(total=total, page=query.page, page_size=query.page_size, items=items)


def _decoded(value: str | None) -> dict | None:
    return None if value is None else json.loads(value)
