"""Bulk jobs in PostgreSQL: submitting a file, its progress, its result rows, and claiming work in chunks.

A job is created whole or not at all (its rows are copied in one transaction). Workers take a *chunk*
— the first rows not yet done, locked ``FOR UPDATE SKIP LOCKED`` — inside a transaction that also writes
their results and the job's counters. A worker that dies mid-chunk loses its connection, PostgreSQL rolls
the transaction back and releases the rows, and the next worker takes them: no row is lost, none is
written twice, and at most one chunk per dead worker is computed again. A hung worker (a partition, not
a death) is cut off by ``idle_in_transaction_session_timeout``. Several workers share one job chunk by
chunk; the least recently served job goes first, so a small job is not stuck behind a large one.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from pydantic import BaseModel, Field

from serve_app.errors import JobNotDone, UnknownJob
from serve_app.jobs.files import InputTable
from serve_app.jobs.results import RESULT_COLUMNS, RowResult

#: Statement timeout for copying a job's rows in (100k rows take about a second).
SUBMIT_TIMEOUT_S = 120
_JOB_COLUMNS = """id, tenant, state, filename, input_format, columns, text_column, model, total_rows, done_rows,
                  match_rows, ambiguous_rows, none_rows, error_rows, created_at, started_at, finished_at"""


class VerdictCounts(BaseModel):
    match: int
    ambiguous: int
    none: int
    error: int


class JobStatus(BaseModel):
    """``GET /api/v1/jobs/{id}``: where a job stands."""

    id: str
    state: str = Field(description="queued, running or done.")
    filename: str
    format: str
    columns: list[str]
    text_column: str = Field(description="The column whose text is looked up.")
    model: str | None
    total_rows: int
    done_rows: int
    progress: float = Field(description="done_rows / total_rows, 0 to 1.")
    counts: VerdictCounts
    rows_per_s: float | None = Field(description="Since the first chunk was taken.")
    eta_s: float | None = Field(description="Seconds left at that rate.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> JobStatus:
        total, done = row["total_rows"], row["done_rows"]
        rate = eta = None
        if row["started_at"] is not None and done:
            end = row["finished_at"] or datetime.now(UTC)
            seconds = max((end - row["started_at"]).total_seconds(), 1e-3)
            rate = round(done / seconds, 1)
            eta = round((total - done) / rate, 1)
        return cls(
            id=str(row["id"]),
            state=row["state"],
            filename=row["filename"],
            format=row["input_format"],
            columns=list(row["columns"]),
            text_column=row["columns"][row["text_column"]],
            model=row["model"],
            total_rows=total,
            done_rows=done,
            progress=round(done / total, 4) if total else 1.0,
            counts=VerdictCounts(
                match=row["match_rows"], ambiguous=row["ambiguous_rows"], none=row["none_rows"], error=row["error_rows"]
            ),
            rows_per_s=rate,
            eta_s=eta,
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )


@dataclass(frozen=True)
class Chunk:
    """Rows of one job, locked by this worker's open transaction until ``commit``."""

    job_id: uuid.UUID
    model: str | None
    row_numbers: list[int]
    texts: list[str]
    _conn: asyncpg.Connection

    async def commit(self, results: list[RowResult]) -> None:
        """Write each row's result and the job's counters; the transaction commits when the claim closes."""
        columns = list(zip(*(result.values() for result in results), strict=True))
        await self._conn.execute(_UPDATE_ROWS, self.job_id, self.row_numbers, *columns)
        verdicts = [result.verdict for result in results]
        await self._conn.execute(
            _UPDATE_COUNTS,
            self.job_id,
            len(results),
            verdicts.count("match"),
            verdicts.count("ambiguous"),
            verdicts.count("none"),
            sum(1 for result in results if result.error is not None),
        )


# $3… are the columns of ``RowResult.values()``, in ``RESULT_COLUMNS`` order.
_UPDATE_ROWS = """
UPDATE job_rows SET done = true, verdict = r.verdict, code = r.code, official_name = r.official_name,
       bank = r.bank, city = r.city, clearing_code = r.clearing_code, confidence = r.confidence,
       reason = r.reason, candidates = r.candidates, directory_as_of = r.directory_as_of,
       data_version = r.data_version, error = r.error
FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::real[],
            $10::text[], $11::text[], $12::date[], $13::bigint[], $14::text[])
     AS r(row_no, code, official_name, bank, city, clearing_code, verdict, confidence, reason, candidates,
          directory_as_of, data_version, error)
WHERE job_rows.job_id = $1 AND job_rows.row_no = r.row_no AND NOT job_rows.done
"""
_UPDATE_COUNTS = """
UPDATE jobs SET done_rows = done_rows + $2, match_rows = match_rows + $3, ambiguous_rows = ambiguous_rows + $4,
       none_rows = none_rows + $5, error_rows = error_rows + $6,
       state = CASE WHEN done_rows + $2 >= total_rows THEN 'done' ELSE 'running' END,
       finished_at = CASE WHEN done_rows + $2 >= total_rows THEN now() END
WHERE id = $1
"""
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
_ACTIVE_JOBS = """
SELECT id FROM jobs WHERE state IN ('queued', 'running') ORDER BY last_claimed_at NULLS FIRST, created_at LIMIT 8
"""
_MARK_CLAIMED = """
UPDATE jobs SET last_claimed_at = clock_timestamp(), started_at = coalesce(started_at, clock_timestamp()),
       state = CASE WHEN state = 'queued' THEN 'running' ELSE state END
WHERE id = $1
RETURNING model, text_column
"""
_CLAIM_ROWS = """
SELECT row_no, cells[$3] AS text FROM job_rows WHERE job_id = $1 AND NOT done ORDER BY row_no LIMIT $2
FOR UPDATE SKIP LOCKED
"""


class JobStore:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def submit(self, tenant: str, filename: str, table: InputTable, adapter: str | None) -> JobStatus:
        """A new job over ``table``'s rows, queued, to be read with ``adapter`` (the API's ``model``; the
        column keeps the API's name); every row is stored before this returns."""
        job_id = uuid.uuid4()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL statement_timeout = '{SUBMIT_TIMEOUT_S}s'")
            row = await conn.fetchrow(
                f"""INSERT INTO jobs (id, tenant, state, filename, input_format, columns, text_column, model,
                                      total_rows, finished_at)
                    VALUES ($1, $2, CASE WHEN $8 = 0 THEN 'done' ELSE 'queued' END, $3, $4, $5, $6, $7, $8,
                            CASE WHEN $8 = 0 THEN now() END)
                    RETURNING {_JOB_COLUMNS}""",  # noqa: S608 - constants only
                job_id,
                tenant,
                filename,
                table.format,
                table.columns,
                table.text_column,
                adapter,
                len(table.rows),
            )
            await conn.copy_records_to_table(
                "job_rows",
                records=((job_id, number, cells) for number, cells in enumerate(table.rows)),
                columns=("job_id", "row_no", "cells"),
                timeout=SUBMIT_TIMEOUT_S,  # not the pool's per-command timeout, which is for serving queries
            )
        return JobStatus.from_row(row)

    async def status(self, tenant: str, job_id: str) -> JobStatus:
        """``UnknownJob`` for an id that is not the tenant's (another tenant's jobs do not exist for it)."""
        row = await self.pool.fetchrow(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant = $2",  # noqa: S608 - constants only
            _job_uuid(job_id),
            tenant,
        )
        if row is None:
            raise UnknownJob(f"no job {job_id} for this tenant")
        return JobStatus.from_row(row)

    async def recent(self, tenant: str, limit: int = 50) -> list[JobStatus]:
        rows = await self.pool.fetch(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE tenant = $1 ORDER BY created_at DESC LIMIT $2",  # noqa: S608
            tenant,
            limit,
        )
        return [JobStatus.from_row(row) for row in rows]

    async def delete(self, tenant: str, job_id: str) -> None:
        """The job and its rows, gone. Rows first, then the job: the order a worker locks them in (its
        chunk's rows, then the job's counters), so deleting a running job waits for the chunk in hand
        instead of deadlocking with it."""
        job = _job_uuid(job_id)
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND tenant = $2)", job, tenant):
                raise UnknownJob(f"no job {job_id} for this tenant")
            await conn.execute("DELETE FROM job_rows WHERE job_id = $1", job)
            await conn.execute("DELETE FROM jobs WHERE id = $1", job)

    async def result_pages(
        self, tenant: str, job_id: str, page_rows: int = 2000
    ) -> tuple[JobStatus, AsyncIterator[list[list[str]]]]:
        """The job's status and its output rows (input cells + result columns) in input order, in pages of
        ``page_rows``. ``JobNotDone`` until every row is done."""
        status = await self.status(tenant, job_id)
        if status.state != "done":
            raise JobNotDone(f"job {job_id} has {status.done_rows} of {status.total_rows} rows done")

        async def pages() -> AsyncIterator[list[list[str]]]:
            after = -1
            while True:
                page = await self.pool.fetch(
                    f"""SELECT row_no, cells, {", ".join(RESULT_COLUMNS)} FROM job_rows
                        WHERE job_id = $1 AND row_no > $2 ORDER BY row_no LIMIT $3""",  # noqa: S608 - constants
                    uuid.UUID(status.id),
                    after,
                    page_rows,
                )
                yield [
                    list(row["cells"]) + RowResult(**{name: row[name] for name in RESULT_COLUMNS}).cells()
                    for row in page
                ]
                if len(page) < page_rows:
                    return
                after = page[-1]["row_no"]

        return status, pages()

    async def changed_codes(self, tenant: str, job_id: str, limit: int) -> tuple[JobStatus, int, list[asyncpg.Record]]:
        """For a finished job: its status, how many rows named a code, and the first ``limit`` of those whose
        code was retired or changed by a load after the row was answered (``row_no``, ``text``, ``code``,
        ``directory_as_of``, ``retired_on``, ``kinds``). ``JobNotDone`` before its last row is done."""
        status = await self.status(tenant, job_id)
        if status.state != "done":
            raise JobNotDone(f"job {job_id} has {status.done_rows} of {status.total_rows} rows done")
        job = uuid.UUID(status.id)
        async with self.pool.acquire() as conn:
            matched = await conn.fetchval("SELECT count(*) FROM job_rows WHERE job_id = $1 AND code IS NOT NULL", job)
            rows = await conn.fetch(_CHANGED_CODES + " ORDER BY r.row_no LIMIT $2", job, limit)
        return status, matched, list(rows)

    async def count_changed_codes(self, job_id: str) -> int:
        return await self.pool.fetchval(f"SELECT count(*) FROM ({_CHANGED_CODES}) changed", uuid.UUID(job_id))  # noqa: S608

    @contextlib.asynccontextmanager
    async def claim(self, chunk_rows: int, hung_after_s: float) -> AsyncIterator[Chunk | None]:
        """A chunk of the least recently served active job, or None when no job has rows left to take.
        Results written with ``Chunk.commit`` are committed when the block exits; an exception rolls back."""
        async with self.pool.acquire() as conn:
            for job_id in [row["id"] for row in await conn.fetch(_ACTIVE_JOBS)]:
                job = await conn.fetchrow(_MARK_CLAIMED, job_id)
                if job is None:
                    continue
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = '{int(hung_after_s * 1000)}'")
                    rows = await conn.fetch(_CLAIM_ROWS, job_id, chunk_rows, job["text_column"] + 1)
                    if rows:
                        yield Chunk(
                            job_id,
                            job["model"],
                            [row["row_no"] for row in rows],
                            [row["text"] for row in rows],
                            conn,
                        )
                        return
            yield None


def _job_uuid(job_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(job_id)
    except ValueError as exc:
        raise UnknownJob(f"no job {job_id}") from exc
