"""Deciding a job's unsure rows: the review queue, and a person's decision on one row.

Every row answered ``ambiguous`` or ``none`` keeps the candidates it was answered with (``choices``). A
person of the job's tenant decides it once: a code (an active branch of the directory) or "no such branch".
The decision is written on the row (the result files show it, who made it and when) and kept as the
tenant's confirmation of the row's text (``service.confirmations``), which the tenant's next answers to
that text follow. Another tenant's job does not exist here (``UnknownJob``, as everywhere).
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, model_validator

from serve_app.directory.codes import is_code_shaped, is_valid_code, pasted_code
from serve_app.errors import InvalidRequest, UnknownRow
from serve_app.jobs.outputs import Decision
from serve_app.jobs.store import JobStore
from serve_app.schemas import Agreement
from serve_app.service.confirmations import record_confirmation

#: Verdicts a person decides.
TO_DECIDE = ("ambiguous", "none")


class Choice(BaseModel):
    """A candidate kept with a row: a branch the answer proposed (or a retired branch's possible successor)."""

    code: str
    name: str
    bank: str
    city: str
    confidence: float | None = None
    evidence: dict[str, Agreement] | None = None
    retired_on: date | None = None


class ReviewRow(BaseModel):
    """One row to decide: what it says, what the service answered, the candidates, and any decision."""

    row: int = Field(description="The row's number among the file's data rows, 1-based.")
    text: str
    verdict: Literal["ambiguous", "none"]
    reason: str
    confidence: float | None
    candidates: list[Choice]
    cells: dict[str, str] = Field(description="The row's other columns, by header.")
    decision: Decision | None


class ReviewPage(BaseModel):
    job_id: str
    total: int = Field(description="Rows matching the filter.")
    undecided: int = Field(description="Rows of the job still to decide (ambiguous or none, no decision).")
    page: int
    page_size: int
    items: list[ReviewRow]


class ReviewQuery(BaseModel):
    """``GET /api/v1/jobs/{id}/review``'s query string."""

    model_config = ConfigDict(extra="forbid")

    verdict: Literal["ambiguous", "none"] | None = Field(default=None, description="Default: both.")
    decided: bool | None = Field(default=None, description="false: only rows still to decide; default: all.")
    page: int = Field(default=1, ge=1, le=100_000)
    page_size: int = Field(default=20, ge=1, le=200)


class DecisionIn(BaseModel):
    """``POST /api/v1/jobs/{id}/rows/{n}/decision``: ``{"code": "…"}`` or ``{"none": true}``."""

    model_config = ConfigDict(extra="forbid")

    code: str | None = Field(default=None, max_length=40, description="A CNAPS code of an active branch.")
    none: bool = Field(default=False, description='true: "no such branch in the directory".')

    @model_validator(mode="after")
    def _one_of(self) -> DecisionIn:
        if (self.code is not None) == self.none:
            raise ValueError('give either "code" or "none": true')
        return self


_ROW_COLUMNS = "row_no, cells, verdict, reason, confidence, choices, decided_code, decided_by, decided_at"


def _review_row(row: asyncpg.Record, columns: list[str], text_column: int) -> ReviewRow:
    cells = list(row["cells"])
    return ReviewRow(
        row=row["row_no"] + 1,
        text=cells[text_column],
        verdict=row["verdict"],
        reason=row["reason"],
        confidence=row["confidence"],
        candidates=[Choice(**choice) for choice in json.loads(row["choices"] or "[]")],
        cells={name: cell for i, (name, cell) in enumerate(zip(columns, cells, strict=False)) if i != text_column},
        decision=Decision.of(row),
    )


async def review_page(store: JobStore, tenant: str, job_id: str, query: ReviewQuery) -> ReviewPage:
    """The job's rows to decide, in file order, filtered and a page at a time (``UnknownJob`` if not the
    tenant's)."""
    status = await store.status(tenant, job_id)
    job, text_column = uuid.UUID(status.id), status.columns.index(status.text_column)
    verdicts = [query.verdict] if query.verdict else list(TO_DECIDE)
    where = "job_id = $1 AND verdict = ANY($2::text[]) AND ($3::bool IS NULL OR (decided_at IS NOT NULL) = $3)"
    async with store.pool.acquire() as conn:
        total, undecided = await conn.fetchrow(
            """SELECT count(*) FILTER (WHERE verdict = ANY($2::text[])
                                       AND ($3::bool IS NULL OR (decided_at IS NOT NULL) = $3)),
                      count(*) FILTER (WHERE decided_at IS NULL)
               FROM job_rows WHERE job_id = $1 AND verdict = ANY($4::text[])""",
            job,
            verdicts,
            query.decided,
            list(TO_DECIDE),
        )
        rows = await conn.fetch(
            f"SELECT {_ROW_COLUMNS} FROM job_rows WHERE {where} ORDER BY row_no LIMIT $4 OFFSET $5",  # noqa: S608
            job,
            verdicts,
            query.decided,
            query.page_size,
            (query.page - 1) * query.page_size,
        )
    return ReviewPage(
        job_id=status.id,
        total=total,
        undecided=undecided,
        page=query.page,
        page_size=query.page_size,
        items=[_review_row(row, status.columns, text_column) for row in rows],
    )


async def decide(
    store: JobStore, tenant: str, job_id: str, row: str, decision: DecisionIn, decided_by: str
) -> ReviewRow:
    """Record a person's decision on row ``row`` (1-based) of the tenant's job, and keep it as the tenant's
    confirmation of the row's text. A second decision on a row replaces the first. ``UnknownJob``,
    ``UnknownRow``; ``InvalidRequest`` for a code that is not an active branch or a row with nothing to
    decide (``match``, skipped, an error)."""
    status = await store.status(tenant, job_id)
    job, text_column = uuid.UUID(status.id), status.columns.index(status.text_column)
    row_no = _row_number(row)
    async with store.pool.acquire() as conn, conn.transaction():
        branch = None if decision.code is None else await _active_branch(conn, decision.code)
        current = await conn.fetchrow(
            "SELECT cells, verdict, decided_at FROM job_rows WHERE job_id = $1 AND row_no = $2 FOR UPDATE",
            job,
            row_no,
        )
        if current is None:
            raise UnknownRow(f"job {job_id} has no row {row}")
        if current["verdict"] not in TO_DECIDE:
            answered = current["verdict"] or "an error"
            raise InvalidRequest(f"row {row} was answered {answered}: only ambiguous and none rows are decided")
        updated = await conn.fetchrow(
            f"""UPDATE job_rows SET decided_code = $3, decided_by = $4, decided_at = now()
                WHERE job_id = $1 AND row_no = $2 RETURNING {_ROW_COLUMNS}""",  # noqa: S608 - constants only
            job,
            row_no,
            None if branch is None else branch["code"],
            decided_by,
        )
        # The kept workbook no longer shows every decision: the next download builds it again.
        await conn.execute(
            "UPDATE jobs SET decided_rows = decided_rows + $2, result_xlsx = NULL WHERE id = $1",
            job,
            int(current["decided_at"] is None),
        )
        text = current["cells"][text_column]
        await record_confirmation(conn, tenant, text, branch, decided_by, job, row_no)
    return _review_row(updated, status.columns, text_column)


def _row_number(row: str) -> int:
    """The stored (0-based) number of 1-based row ``row``."""
    if not row.isdigit() or not 1 <= int(row) <= 10_000_000:
        raise UnknownRow(f"no row {row[:20]!r}: rows are numbered from 1")
    return int(row) - 1


async def _active_branch(conn: asyncpg.Connection, code: str) -> asyncpg.Record:
    """The directory record of ``code`` (pasted with spaces or hyphens is fine) if it is an active branch;
    ``InvalidRequest`` otherwise, saying why."""
    code = pasted_code(code)
    if not is_code_shaped(code) or not is_valid_code(code):
        raise InvalidRequest(f"{code[:40]!r} is not a CNAPS code (12 digits with a valid check digit)")
    branch = await conn.fetchrow("SELECT code, name, city, retired_on FROM branches WHERE code = $1", code)
    if branch is None:
        raise InvalidRequest(f"{code} is not in the directory: decide none if no branch fits")
    if branch["retired_on"] is not None:
        raise InvalidRequest(f"{code} was retired from the directory as of {branch['retired_on']}: never a payee")
    return branch
