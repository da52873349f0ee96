"""The query log: rows buffered in memory and written to PostgreSQL in batches.

A batch is written when it reaches ``batch_size``, every ``interval_s``, and on ``close()`` (replica
shutdown). While PostgreSQL is down rows stay buffered up to ``max_buffer``; past that the oldest are
dropped and counted. A batch the database refuses for its *data* is written row by row, and only the
rows it refuses are dropped (counted as ``rejected``), so one bad row cannot block the log.
Worst case on a crash: the rows buffered since the last flush (one interval or one batch) are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

import asyncpg

log = logging.getLogger(__name__)

#: The connection or server is unavailable: keep the rows and retry on the next flush.
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.QueryCanceledError,
)

_INSERT = """INSERT INTO query_log (query, normalized, source, model, top_code, matches, latency_ms, client,
                                    verdict, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"""


class QueryLog:
    def __init__(self, pool: asyncpg.Pool, batch_size: int = 200, interval_s: float = 1.0, max_buffer: int = 50_000):
        self.pool = pool
        self.batch_size = batch_size
        self.interval_s = interval_s
        self._buffer: deque[tuple] = deque(maxlen=max_buffer)
        self.written = self.dropped = self.rejected = self.failures = 0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._flush_periodically())

    def record(
        self,
        *,
        query: str,
        normalized: str,
        source: str,
        model: str | None,
        top_code: str | None,
        matches: int,
        latency_ms: float,
        client: str | None,
        verdict: str | None = None,
        reason: str | None = None,
    ) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append((query, normalized, source, model, top_code, matches, latency_ms, client, verdict, reason))
        if len(self._buffer) >= self.batch_size:
            asyncio.get_running_loop().create_task(self.flush())

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def flush(self) -> int:
        """Write what is buffered; return rows written (0 if the database is away; rows are kept)."""
        async with self._lock:
            rows = list(self._buffer)
            if not rows:
                return 0
            try:
                try:
                    await self.pool.executemany(_INSERT, rows)  # atomic: all rows or none
                except _UNAVAILABLE:
                    raise
                except asyncpg.PostgresError as exc:
                    log.warning("query log batch refused (%s); writing it row by row", exc)
                    return await self._write_one_by_one(len(rows))
            except _UNAVAILABLE as exc:
                self.failures += 1
                log.warning("query log flush failed, %d rows kept: %s", self.pending, exc)
                return 0
            for _ in rows:
                self._buffer.popleft()
            self.written += len(rows)
            return len(rows)

    async def _write_one_by_one(self, count: int) -> int:
        """Write the oldest ``count`` rows singly, dropping only those the database refuses."""
        written = 0
        async with self.pool.acquire() as conn:
            for _ in range(count):
                try:
                    await conn.execute(_INSERT, *self._buffer[0])
                    written += 1
                    self.written += 1
                except _UNAVAILABLE:
                    raise
                except asyncpg.PostgresError as exc:
                    self.rejected += 1
                    log.warning("query log row rejected by the database: %s", exc)
                self._buffer.popleft()
        return written

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _flush_periodically(self) -> None:
        last = time.monotonic()
        while True:  # wakes at least every second, so a reconfigured interval applies at once
            await asyncio.sleep(min(self.interval_s, 1.0))
            if time.monotonic() - last >= self.interval_s:
                await self.flush()
                last = time.monotonic()
