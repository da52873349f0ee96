"""``POST /api/v1/jobs/{id}/recheck``: is last month's file still payable?

A finished job's ``match`` rows name codes as the directory was when each row was answered. Recheck finds
the rows whose code has since been retired, or renamed, moved or changed by a later load
(``directory_changes``), and answers each of those rows again against today's directory, with the job's
adapter — so a clerk sees, for each, what changed and what the service says now. Rows whose code did not
change are only counted: they are answered as they were.
"""

from __future__ import annotations

import uuid
from datetime import date

from pydantic import BaseModel, Field

from serve_app.errors import JobNotDone
from serve_app.jobs.results import RowResult, answer_rows
from serve_app.jobs.runner import AnswerWith
from serve_app.jobs.store import JobStore
from serve_app.schemas import QueryRequest, QueryResult

# A row's code changed when it is retired now, or a load after the row's answer changed it ('new' is
# never a change of a code already paid to).
_CHANGED_CODES = """
SELECT r.row_no, r.cells[j.text_column + 1] AS text, r.code, r.directory_as_of, b.retired_on,
       (SELECT array_agg(DISTINCT c.kind ORDER BY c.kind) FROM directory_changes c
        WHERE c.code = r.code AND c.data_version > coalesce(r.data_version, 0) AND c.kind <> 'new') AS kinds
FROM job_rows r JOIN jobs j ON j.id = r.job_id LEFT JOIN branches b ON b.code = r.code
WHERE r.job_id = $1 AND r.code IS NOT NULL
  AND (b.retired_on IS NOT NULL OR EXISTS (
       SELECT 1 FROM directory_changes c
       WHERE c.code = r.code AND c.data_version > coalesce(r.data_version, 0) AND c.kind <> 'new'))
"""
#: Rows re-answered (and listed) by one recheck; the report says how many more changed.
MAX_RECHECK_ROWS = 1000
#: Rows answered again at the same time.
RECHECK_CONCURRENCY = 8


class AnswerNow(BaseModel):
    verdict: str | None
    reason: str | None
    code: str | None = Field(description="The code to pay to now (a match only).")
    official_name: str | None
    candidates: str | None
    error: str | None


class RecheckRow(BaseModel):
    row_no: int = Field(description="0-based position in the input, as in the result files.")
    text: str
    code: str = Field(description="The code the row was matched to.")
    answered_as_of: date | None = Field(description="The directory snapshot the row was answered from.")
    changes: list[str] = Field(description="What happened to the code since: retired, returned, renamed, moved, …")
    retired_on: date | None
    now: AnswerNow


class RecheckReport(BaseModel):
    job_id: str
    directory_as_of: date | None
    data_version: int
    matched_rows: int = Field(description="Rows that named a code (match).")
    changed_rows: int = Field(description="Of those, rows whose code was retired or changed since.")
    rows: list[RecheckRow] = Field(description=f"The changed rows, answered again (the first {MAX_RECHECK_ROWS}).")


async def recheck_job(
    store: JobStore, answer: AnswerWith, tenant: str, job_id: str, data_version: int, as_of: date | None
) -> RecheckReport:
    """The report for one of ``tenant``'s finished jobs (``UnknownJob``, ``JobNotDone`` otherwise); ``answer``
    answers a request with an adapter (``QueryService.answer``); ``data_version``/``as_of``: today's."""
    status = await store.status(tenant, job_id)
    if status.state != "done":
        raise JobNotDone(f"job {job_id} has {status.done_rows} of {status.total_rows} rows done")
    job = uuid.UUID(status.id)
    async with store.pool.acquire() as conn:
        matched = await conn.fetchval("SELECT count(*) FROM job_rows WHERE job_id = $1 AND code IS NOT NULL", job)
        changed = await conn.fetch(_CHANGED_CODES + " ORDER BY r.row_no LIMIT $2", job, MAX_RECHECK_ROWS)
        changed_rows = await conn.fetchval(f"SELECT count(*) FROM ({_CHANGED_CODES}) changed", job)  # noqa: S608

    async def with_job_adapter(request: QueryRequest) -> QueryResult:
        return await answer(request, status.model, tenant=tenant)

    now = await answer_rows(with_job_adapter, [row["text"] for row in changed], RECHECK_CONCURRENCY)
    rows = [
        RecheckRow(
            row_no=row["row_no"],
            text=row["text"],
            code=row["code"],
            answered_as_of=row["directory_as_of"],
            changes=list(row["kinds"] or []) or ["retired"],
            retired_on=row["retired_on"],
            now=_answer_now(result),
        )
        for row, result in zip(changed, now, strict=True)
    ]
    return RecheckReport(
        job_id=status.id,
        directory_as_of=as_of,
        data_version=data_version,
        matched_rows=matched,
        changed_rows=changed_rows,
        rows=rows,
    )


def _answer_now(result: RowResult) -> AnswerNow:
    return AnswerNow(
        verdict=result.verdict,
        reason=result.reason,
        code=result.code,
        official_name=result.official_name,
        candidates=result.candidates,
        error=result.error,
    )
