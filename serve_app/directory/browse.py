"""Browsing the directory: branches filtered by bank, province, city, district and name text, a page at a
time with the total (active codes unless asked for retired ones); the institutions with their counts of
active branches.

Each filter adds one fixed clause (values are always bound, never spliced), so every combination has an
indexed plan: ``(province, city)``, ``(city, district)``, ``(district)``, and the GIN index, whose
leading ``bank_name`` key serves the bank and whose trigrams serve the name text (``LIKE`` on
``search_name``, wildcards in the text escaped). A bank may be named by any of its aliases (工行). Pages
are ordered by code.
"""

from __future__ import annotations

import time
from typing import Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from serve_app.db.errors import DIRECTORY, database_errors
from serve_app.db.sql import escape_like, where_clause
from serve_app.directory.gazetteer import Gazetteer
from serve_app.normalize import normalize
from serve_app.schemas import BranchRecordOut, refuse_control_characters

MAX_PAGE_SIZE = 100
#: Seconds a replica reuses the bank list (it changes only with a directory load).
BANKS_TTL_S = 60.0
_CLAUSES = {
    "bank": "bank_name = (SELECT name FROM banks WHERE name = ${n} OR ${n} = ANY(aliases) LIMIT 1)",
    "province": "province = ${n}",
    "city": "city = ${n}",
    "district": "district = ${n}",
    "q": "search_name LIKE ${n} ESCAPE '\\'",
}

_STATUS = {"active": ["retired_on IS NULL"], "retired": ["retired_on IS NOT NULL"], "all": []}


class BrowseQuery(BaseModel):
    """The query string of ``GET /api/v1/branches``; empty filters are ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    bank: str | None = Field(default=None, max_length=64, description="Institution name or alias (工行).")
    province: str | None = Field(default=None, max_length=32)
    city: str | None = Field(default=None, max_length=32)
    district: str | None = Field(default=None, max_length=32)
    q: str | None = Field(default=None, max_length=64, description="Text the official name contains.")
    status: Literal["active", "retired", "all"] = Field(
        default="active", description="Active codes (payable), retired ones (left the directory), or both."
    )
    page: int = Field(default=1, ge=1, le=100_000)
    page_size: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE)

    @field_validator("bank", "province", "city", "district", "q")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        return None if value is None else refuse_control_characters(value, "a filter")


class BranchPage(BaseModel):
    total: int
    page: int
    page_size: int
    items: list[BranchRecordOut]


class BankOut(BaseModel):
    name: str
    category_code: str
    category: str
    aliases: list[str]
    branches: int = Field(description="Branches of this institution in the directory.")


def full_place_names(query: BrowseQuery) -> BrowseQuery:
    """``query`` with its places as the directory names them: 成都 → 成都市, 四川 → 四川省, 江油 → 江油市 (the
    short forms queries accept); a name the gazetteer does not know is kept as written."""
    gazetteer = Gazetteer.default()
    province = gazetteer.province_named(query.province) if query.province else None
    city = gazetteer.resolve(query.city, province, prefer="city") if query.city else None
    district = gazetteer.resolve(query.district, province, prefer="district") if query.district else None
    return query.model_copy(
        update={
            "province": province.name if province else query.province,
            "city": city.name if city and city.level == "city" else query.city,
            "district": district.name if district and district.level == "district" else query.district,
        }
    )


def browse_statements(query: BrowseQuery) -> tuple[str, str, list[object]]:
    """(page statement, count statement, arguments) for ``query``: built from the fixed clauses only."""
    query = full_place_names(query)
    values: dict[str, object] = {name: getattr(query, name) for name in _CLAUSES}
    text = normalize(query.q) if query.q else ""
    values["q"] = f"%{escape_like(text)}%" if text else None
    where, arguments = where_clause(_CLAUSES, values)
    where = " AND ".join([where, *_STATUS[query.status]])
    columns = "code, name, bank_name AS bank, bank_code, province, city, district, clearing_code, retired_on"
    n = len(arguments)
    page = f"SELECT {columns} FROM branches WHERE {where} ORDER BY code LIMIT ${n + 1} OFFSET ${n + 2}"  # noqa: S608
    count = f"SELECT count(*) FROM branches WHERE {where}"  # noqa: S608 - fixed clauses, bound values
    return page, count, arguments


class DirectoryBrowser:
    def __init__(self, pool: asyncpg.Pool, acquire_timeout_s: float | None = None):
        self.pool = pool
        self.acquire_timeout_s = acquire_timeout_s
        self._banks: tuple[float, int, list[BankOut]] | None = None

    async def branches(self, query: BrowseQuery) -> BranchPage:
        page, count, arguments = browse_statements(query)
        offset = (query.page - 1) * query.page_size
        with database_errors(DIRECTORY):
            async with self.pool.acquire(timeout=self.acquire_timeout_s) as conn:
                total = await conn.fetchval(count, *arguments)
                rows = await conn.fetch(page, *arguments, query.page_size, offset)
        return BranchPage(
            total=total,
            page=query.page,
            page_size=query.page_size,
            items=[BranchRecordOut.model_validate(dict(row)) for row in rows],
        )

    async def banks(self, data_version: int) -> list[BankOut]:
        """Every institution with its branch count, most branches first (reused while the data is unchanged)."""
        cached = self._banks
        if cached is not None and cached[1] == data_version and time.monotonic() - cached[0] < BANKS_TTL_S:
            return cached[2]
        with database_errors(DIRECTORY):
            async with self.pool.acquire(timeout=self.acquire_timeout_s) as conn:
                rows = await conn.fetch(
                    """SELECT b.name, b.category_code, b.category, b.aliases, coalesce(c.branches, 0) AS branches
                       FROM banks b
                       LEFT JOIN (SELECT bank_name, count(*) AS branches FROM branches WHERE retired_on IS NULL
                                  GROUP BY bank_name) c
                            ON c.bank_name = b.name
                       ORDER BY branches DESC, b.name"""
                )
        banks = [BankOut.model_validate(dict(row)) for row in rows]
        self._banks = (time.monotonic(), data_version, banks)
        return banks
