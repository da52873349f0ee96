"""The query log: rows buffered in memory and written to PostgreSQL in batches.

One flusher task writes: every ``interval_s``, as soon as ``batch_size`` rows are waiting, and on
``close()`` (replica shutdown). It drains the buffer in chunks of ``batch_size`` rows, one statement
each, so a backlog never becomes one statement too big for the statement timeout; a chunk that fails
for unavailability stops the drain and keeps every row. While PostgreSQL is down rows stay buffered up to
``max_buffer``; past that new rows are dropped and counted. A chunk the database refuses for its
*data* is written row by row, and only the rows it refuses are dropped (counted as ``rejected``).
Worst case on a crash: the rows buffered since the last flush (one interval or one batch) are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from typing import Any

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

#: The columns of a buffered row, in order.
_COLUMNS = tuple("query normalized source model top_code matches latency_ms client verdict reason".split())
_PLACEHOLDERS = ", ".join(f"${i}" for i in range(1, len(_COLUMNS) + 1))
_INSERT = f"INSERT INTO query_log ({', '.join(_COLUMNS)}) VALUES ({_PLACEHOLDERS})"  # noqa: S608 - constants


class QueryLog:
    def __init__(self, pool: asyncpg.Pool, batch_size: int = 200, interval_s: float = 1.0, max_buffer: int = 50_000):
        self.pool = pool
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.max_buffer = max_buffer
        self._buffer: deque[tuple[Any, ...]] = deque()
        self.written = self.dropped = self.rejected = self.failures = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._last_flush = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the one flusher (until then, and without it, rows are written by ``flush``/``close``)."""
        if self._task is None:
            self._task = asyncio.create_task(self._flusher())

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
        if len(self._buffer) >= self.max_buffer:
            self.dropped += 1  # the newest row: rows already buffered may be in a statement in flight
            return
        self._buffer.append((query, normalized, source, model, top_code, matches, latency_ms, client, verdict, reason))
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def flush(self) -> int:
        """Write what is buffered, chunk by chunk; return rows written. The database being away stops the
        drain at the failed chunk and keeps its rows for the next flush."""
        async with self._lock:
            written = 0
            while self._buffer:
                count = min(len(self._buffer), self.batch_size)
                try:
                    written += await self._write_chunk(count)
                except _UNAVAILABLE as exc:
                    self.failures += 1
                    log.warning("query log flush failed, %d rows kept: %s", self.pending, exc)
                    break
            return written

    async def _write_chunk(self, count: int) -> int:
        rows = list(itertools.islice(self._buffer, count))
        try:
            # One COPY: all rows or none, at a third of the cost of an executemany of INSERTs (200 rows:
            # 1.2 ms against 3.6 ms; a row per query, cached ones included).
            async with self.pool.acquire() as conn:
                await conn.copy_records_to_table("query_log", records=rows, columns=_COLUMNS)
        except _UNAVAILABLE:
            raise
        except asyncpg.PostgresError as exc:
            log.warning("query log batch refused (%s); writing it row by row", exc)
            return await self._write_one_by_one(count)
        for _ in rows:
            self._buffer.popleft()
        self.written += count
        return count

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

    async def _flusher(self) -> None:
        while True:  # wakes at least every second, so a reconfigured interval applies at once
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(self.interval_s, 1.0)):
                    await self._wake.wait()
            self._wake.clear()
            if self._wake_due() or len(self._buffer) >= self.batch_size:
                await self.flush()
                self._last_flush = time.monotonic()

    def _wake_due(self) -> bool:
        return time.monotonic() - self._last_flush >= self.interval_s
