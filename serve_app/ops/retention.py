"""The retention sweep: query-log rows and finished jobs older than the policy says, deleted in batches.

One sweeper at a time (a session advisory lock; another that finds it taken does nothing); each batch is
its own short transaction, so a sweep never holds a lock the service needs for long. Jobs go with their
rows and result files; jobs still queued or running are never swept.
"""

from __future__ import annotations

import asyncpg

from serve_app.config import RetentionPolicy

SWEEP_LOCK_KEY = 0x5E_7E_A9_04
BATCH = 5000

_OLD_QUERY_LOG = """
DELETE FROM query_log WHERE id IN (
    SELECT id FROM query_log WHERE created_at < now() - make_interval(days => $1) LIMIT $2)
"""
_OLD_JOBS = """
SELECT id FROM jobs WHERE state = 'done' AND coalesce(finished_at, created_at) < now() - make_interval(days => $1)
LIMIT $2
"""


async def sweep(pool: asyncpg.Pool, policy: RetentionPolicy) -> dict[str, int] | None:
    """Rows deleted by table (``query_log``, ``jobs``, ``job_rows``); None when another sweep is running."""
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", SWEEP_LOCK_KEY):
            return None
        try:
            deleted = {"query_log": 0, "jobs": 0, "job_rows": 0}
            while (n := _count(await conn.execute(_OLD_QUERY_LOG, policy.query_log_days, BATCH))) > 0:
                deleted["query_log"] += n
            while jobs := [row["id"] for row in await conn.fetch(_OLD_JOBS, policy.job_days, 100)]:
                async with conn.transaction():  # rows first, then jobs: the order workers lock them in
                    deleted["job_rows"] += _count(
                        await conn.execute("DELETE FROM job_rows WHERE job_id = ANY($1::uuid[])", jobs)
                    )
                    deleted["jobs"] += _count(await conn.execute("DELETE FROM jobs WHERE id = ANY($1::uuid[])", jobs))
            return deleted
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", SWEEP_LOCK_KEY)


def _count(status: str) -> int:
    """Rows a ``DELETE n`` status line names."""
    return int(status.rsplit(" ", 1)[-1])
