"""Bulk jobs in PostgreSQL: submitting a file, its progress, its result rows, and claiming work in chunks.

A job is created whole or not at all (its rows are copied in one transaction). Workers take a *chunk*
— the first rows not yet done, locked ``FOR UPDATE SKIP LOCKED`` — inside a transaction that also writes
their results and the job's counters. A worker that dies mid-chunk loses its connection, PostgreSQL rolls
the transaction back and releases the rows, and the next worker takes them: no row is lost, none is
written twice, and at most one chunk per dead worker is computed again. A hung worker (a partition, not
a death) is cut off by ``idle_in_transaction_session_timeout``. Several workers share one job chunk by
chunk; the tenant served least recently goes first, then its least recently served job, so neither a
small job behind a large one nor a tenant behind another's many jobs waits.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from serve_app.errors import JobNotDone, QuotaExceeded, UnknownJob
from serve_app.jobs.files import InputTable
from serve_app.jobs.outputs import Decision, output_cells
from serve_app.jobs.results import RESULT_COLUMNS, RowResult
from serve_app.jobs.status import JOB_COLUMNS, JobStatus

#: Statement timeout for copying a job's rows in (100k rows take about a second).
SUBMIT_TIMEOUT_S = 120


@dataclass(frozen=True)
class JobQuota:
    """What one tenant may hold: jobs queued or running, and rows stored (all its jobs')."""

    max_active_jobs: int
    max_stored_rows: int


async def _check_quota(conn: asyncpg.Connection, tenant: str, rows: int, quota: JobQuota) -> None:
    held = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE state IN ('queued', 'running')) AS active,
                  coalesce(sum(total_rows), 0) AS stored
           FROM jobs WHERE tenant = $1""",
        tenant,
    )
    if held["active"] >= quota.max_active_jobs:
        raise QuotaExceeded(
            f"this tenant has {held['active']} jobs queued or running, the most it may: submit when one is done",
            retry_after_s=30,
        )
    if held["stored"] + rows > quota.max_stored_rows:
        raise QuotaExceeded(
            f"this tenant's jobs hold {held['stored']:,} rows; with these {rows:,} it would pass its "
            f"{quota.max_stored_rows:,}: delete finished jobs (DELETE /api/v1/jobs/{{id}}) first",
            retry_after_s=3600,
        )


async def _replayed(conn: asyncpg.Connection, tenant: str, idempotency_key: str) -> JobStatus | None:
    row = await conn.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = $1 AND idempotency_key = $2",  # noqa: S608
        tenant,
        idempotency_key,
    )
    return None if row is None else JobStatus.from_row(row)


@dataclass(frozen=True)
class Chunk:
    """Rows of one job, locked by this worker's open transaction until ``commit``."""

    job_id: uuid.UUID
    tenant: str
    model: str | None
    row_numbers: list[int]
    texts: list[str]
    _conn: asyncpg.Connection

    async def commit(self, results: list[RowResult]) -> bool:
        """Write each row's result and the job's counters; the transaction commits when the claim closes.
        True when these were the job's last rows."""
        columns = list(zip(*(result.values() for result in results), strict=True))
        await self._conn.execute(_UPDATE_ROWS, self.job_id, self.row_numbers, *columns)
        verdicts = [result.verdict for result in results]
        return await self._conn.fetchval(
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
       data_version = r.data_version, error = r.error, choices = r.choices
FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::real[],
            $10::text[], $11::text[], $12::date[], $13::bigint[], $14::text[], $15::jsonb[])
     AS r(row_no, code, official_name, bank, city, clearing_code, verdict, confidence, reason, candidates,
          directory_as_of, data_version, error, choices)
WHERE job_rows.job_id = $1 AND job_rows.row_no = r.row_no AND NOT job_rows.done
"""
_UPDATE_COUNTS = """
UPDATE jobs SET done_rows = done_rows + $2, match_rows = match_rows + $3, ambiguous_rows = ambiguous_rows + $4,
       none_rows = none_rows + $5, error_rows = error_rows + $6,
       state = CASE WHEN done_rows + $2 >= total_rows THEN 'done' ELSE 'running' END,
       finished_at = CASE WHEN done_rows + $2 >= total_rows THEN now() END
WHERE id = $1
RETURNING state = 'done'
"""
# Fair between tenants first, then between a tenant's jobs: the tenant served least recently (a tenant
# with a new job first), then its job served least recently. A tenant with fifty jobs and one with one
# take turns chunk by chunk.
_ACTIVE_JOBS = """
SELECT id FROM (
    SELECT id, created_at, last_claimed_at, max(last_claimed_at) OVER (PARTITION BY tenant) AS tenant_served
    FROM jobs WHERE state IN ('queued', 'running')
) active
ORDER BY tenant_served NULLS FIRST, last_claimed_at NULLS FIRST, created_at
LIMIT 8
"""
_MARK_CLAIMED = """
UPDATE jobs SET last_claimed_at = clock_timestamp(), started_at = coalesce(started_at, clock_timestamp()),
       state = CASE WHEN state = 'queued' THEN 'running' ELSE state END
WHERE id = $1
RETURNING tenant, model, text_column
"""
_CLAIM_ROWS = """
SELECT row_no, cells[$3] AS text FROM job_rows WHERE job_id = $1 AND NOT done ORDER BY row_no LIMIT $2
FOR UPDATE SKIP LOCKED
"""


class JobStore:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def submit(
        self,
        tenant: str,
        filename: str,
        table: InputTable,
        adapter: str | None,
        quota: JobQuota | None = None,
        idempotency_key: str | None = None,
    ) -> JobStatus:
        """A new job over ``table``'s rows, queued, to be read with ``adapter`` (the API's ``model``, pinned
        as ``name@revision``); every row is stored before this returns. ``QuotaExceeded`` when the tenant is
        at its ``quota``. With an ``idempotency_key`` the tenant already used, that job is returned instead
        (a client retrying after a commit it did not see creates no second job)."""
        job_id = uuid.uuid4()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL statement_timeout = '{SUBMIT_TIMEOUT_S}s'")
            # One submission per tenant at a time: its quota and its idempotency keys are checked race-free.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('jobs:' || $1))", tenant)
            if idempotency_key is not None and (again := await _replayed(conn, tenant, idempotency_key)):
                return again
            if quota is not None:
                await _check_quota(conn, tenant, len(table.rows), quota)
            skipped = sum(reason is not None for reason in table.skips)
            row = await conn.fetchrow(
                f"""INSERT INTO jobs (id, tenant, state, filename, input_format, columns, text_column, model,
                                      total_rows, done_rows, skipped_rows, finished_at, idempotency_key,
                                      title_lines, header_line, column_kinds)
                    VALUES ($1, $2, CASE WHEN $8::int = $9::int THEN 'done' ELSE 'queued' END,
                            $3, $4, $5, $6, $7, $8, $9, $9,
                            CASE WHEN $8::int = $9::int THEN now() END, $10, $11::jsonb, $12, $13)
                    RETURNING {JOB_COLUMNS}""",  # noqa: S608 - constants only
                job_id,
                tenant,
                filename,
                table.format,
                table.columns,
                table.text_column,
                adapter,
                len(table.rows),
                skipped,
                idempotency_key,
                json.dumps(table.title_lines, ensure_ascii=False),
                table.header_line,
                table.column_kinds,
            )
            await conn.copy_records_to_table(
                "job_rows",
                records=(
                    (job_id, number, cells, reason is not None, "skipped" if reason else None, reason)
                    for number, (cells, reason) in enumerate(zip(table.rows, table.skips, strict=True))
                ),
                columns=("job_id", "row_no", "cells", "done", "verdict", "reason"),
                timeout=SUBMIT_TIMEOUT_S,  # not the pool's per-command timeout, which is for serving queries
            )
        return JobStatus.from_row(row)

    async def replayed(self, tenant: str, idempotency_key: str) -> JobStatus | None:
        """The tenant's job submitted with this idempotency key, if any."""
        async with self.pool.acquire() as conn:
            return await _replayed(conn, tenant, idempotency_key)

    async def status(self, tenant: str, job_id: str) -> JobStatus:
        """``UnknownJob`` for an id that is not the tenant's (another tenant's jobs do not exist for it)."""
        row = await self.pool.fetchrow(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant = $2",  # noqa: S608 - constants only
            _job_uuid(job_id),
            tenant,
        )
        if row is None:
            raise UnknownJob(f"no job {job_id} for this tenant")
        return JobStatus.from_row(row)

    async def recent(self, tenant: str, limit: int = 50) -> list[JobStatus]:
        rows = await self.pool.fetch(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = $1 ORDER BY created_at DESC LIMIT $2",  # noqa: S608
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
                    f"""SELECT row_no, cells, {", ".join(RESULT_COLUMNS)}, decided_code, decided_by, decided_at
                        FROM job_rows
                        WHERE job_id = $1 AND row_no > $2 ORDER BY row_no LIMIT $3""",  # noqa: S608 - constants
                    uuid.UUID(status.id),
                    after,
                    page_rows,
                )
                yield [
                    list(row["cells"]) + output_cells(RowResult(**{name: row[name] for name in RESULT_COLUMNS}),
                                                      Decision.of(row))
                    for row in page
                ]  # fmt: skip
                if len(page) < page_rows:
                    return
                after = page[-1]["row_no"]

        return status, pages()

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
                            job["tenant"],
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
