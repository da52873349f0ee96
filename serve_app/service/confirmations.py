"""A tenant's confirmations: texts a person of the tenant decided, and what they decided.

A decision on a job row (``jobs.review``) is stored here under the row's *text key* — the text as answers
are keyed: its normalized words, and the code it carries, if any (``AnswerInputs.text_key``). The tenant's next answer
to a text with that key is the decision (``QueryService.answer``): ``match`` / ``confirmed`` with the code
chosen, or ``none`` / ``confirmed_none``. A decided code that has since been retired, renamed or moved is
not used (``query.pipeline``), and the answer says so. Nothing here is shared between tenants: every read and write
names the tenant, and the result cache keys on the confirmation (``AnswerInputs.confirmation``).
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from serve_app.query.inputs import read_text, text_key
from serve_app.schemas import Confirmation

_COLUMNS = "id, text, code, name, city, decided_by, decided_at, job_id, row_no"


class ConfirmationOut(BaseModel):
    """One confirmation, as ``GET /api/v1/confirmations`` lists it."""

    model_config = ConfigDict(extra="forbid")

    id: int
    text: str = Field(description="The text as it was written where it was decided.")
    code: str | None = Field(description='The branch chosen; null: decided "no such branch in the directory".')
    name: str | None
    city: str | None
    decided_by: str
    decided_at: datetime
    job_id: str | None
    row: int | None = Field(description="The job row it was decided on (1-based), while that job exists.")

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ConfirmationOut:
        values = {name: value for name, value in row.items() if name != "row_no"}
        return cls(**values | {"job_id": str(row["job_id"]) if row["job_id"] else None,
                               "row": None if row["row_no"] is None else row["row_no"] + 1})  # fmt: skip


class ConfirmationPage(BaseModel):
    total: int
    page: int
    page_size: int
    items: list[ConfirmationOut]


class ConfirmationQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page: int = Field(default=1, ge=1, le=100_000)
    page_size: int = Field(default=50, ge=1, le=500)


class ConfirmationStore:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def lookup(self, tenant: str, key: str) -> Confirmation | None:
        """The tenant's decision on texts with this key, if any (not yet checked against the directory)."""
        if not key:
            return None
        row = await self.pool.fetchrow(
            "SELECT code, name, city, decided_by, decided_at FROM confirmations WHERE tenant = $1 AND text_key = $2",
            tenant,
            key,
        )
        return None if row is None else Confirmation(**dict(row))

    async def page(self, tenant: str, query: ConfirmationQuery) -> ConfirmationPage:
        offset = (query.page - 1) * query.page_size
        async with self.pool.acquire() as conn:
            total = await conn.fetchval("SELECT count(*) FROM confirmations WHERE tenant = $1", tenant)
            rows = await conn.fetch(
                f"""SELECT {_COLUMNS} FROM confirmations WHERE tenant = $1
                    ORDER BY decided_at DESC, id DESC LIMIT $2 OFFSET $3""",  # noqa: S608 - constants only
                tenant,
                query.page_size,
                offset,
            )
        return ConfirmationPage(
            total=total, page=query.page, page_size=query.page_size, items=[ConfirmationOut.from_row(r) for r in rows]
        )

    async def every(self, tenant: str) -> list[ConfirmationOut]:
        """All of the tenant's confirmations, oldest first (the export)."""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM confirmations WHERE tenant = $1 ORDER BY decided_at, id",  # noqa: S608
            tenant,
        )
        return [ConfirmationOut.from_row(row) for row in rows]

    async def delete(self, tenant: str, confirmation_id: int) -> bool:
        """Forget one confirmation of the tenant's; False when it has none with that id."""
        deleted: str = await self.pool.execute(
            "DELETE FROM confirmations WHERE tenant = $1 AND id = $2", tenant, confirmation_id
        )
        return deleted != "DELETE 0"


async def record_confirmation(
    conn: asyncpg.Connection,
    tenant: str,
    text: str,
    branch: asyncpg.Record | None,
    decided_by: str,
    job_id: object,
    row_no: int,
) -> None:
    """Store (or replace) the tenant's decision on ``text``: ``branch`` chosen, or None for "no such branch".
    Called inside the transaction that records the decision on the job row."""
    await conn.execute(
        """INSERT INTO confirmations (tenant, text_key, text, code, name, city, decided_by, job_id, row_no)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (tenant, text_key) DO UPDATE SET text = EXCLUDED.text, code = EXCLUDED.code,
               name = EXCLUDED.name, city = EXCLUDED.city, decided_by = EXCLUDED.decided_by,
               decided_at = now(), job_id = EXCLUDED.job_id, row_no = EXCLUDED.row_no""",
        tenant,
        text_key(*read_text(text)),
        text,
        None if branch is None else branch["code"],
        None if branch is None else branch["name"],
        None if branch is None else branch["city"],
        decided_by,
        job_id,
        row_no,
    )
