"""The bulk worker's loop: claim a chunk, answer its rows through the query path, commit, repeat.

Rows of a chunk are answered ``concurrency`` at a time, and a text that repeats within the chunk is asked
once (``answer_rows``). The answering itself
is the service's own path (``QueryService.answer``: result cache, rules, model, retrieval, verdict).
When a dependency fails the chunk is rolled back and retried after a pause; the rows are never marked
with a transient error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from serve_app.config import JobTunables
from serve_app.jobs.results import RowResult, answer_rows
from serve_app.jobs.store import Chunk, JobStore
from serve_app.jobs.workbooks import build_when_done
from serve_app.schemas import QueryRequest, QueryResult

log = logging.getLogger(__name__)

#: Answers one request, extracting with the adapter named (None: the service's default path), for the tenant
#: named (its decisions on texts apply): ``QueryService.answer(request, adapter, tenant=…)``.
AnswerWith = Callable[..., Awaitable[QueryResult]]
#: Pause after a chunk failed for a dependency, doubled per failure up to ``MAX_BACKOFF_S``.
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0


class RunnerObserver(Protocol):
    def on_chunk(self, verdicts: dict[str, int] | None) -> None: ...  # None: the chunk failed and rolled back


@dataclass
class RunnerStats:
    chunks: int = 0
    rows: int = 0
    failed_chunks: int = 0
    last_error: str | None = None
    busy_s: float = 0.0
    verdicts: dict[str, int] = field(default_factory=dict)


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        answer: AnswerWith,
        tunables: JobTunables,
        observer: RunnerObserver | None = None,
        refresh: Callable[[], Awaitable[object]] | None = None,
    ):
        """``refresh`` runs before each chunk: the query service reads the directory's data version there,
        so a directory reload mid-job is followed from the next chunk on (caches and vocabulary)."""
        self.store = store
        self.answer = answer
        self.tunables = tunables
        self.observer = observer
        self.refresh = refresh
        self.stats = RunnerStats()

    async def run_chunk(self) -> int:
        """Claim, answer and commit one chunk; the rows done (0: no work). Errors propagate, rolled back."""
        tunables = self.tunables
        if self.refresh is not None:
            await self.refresh()
        async with self.store.claim(tunables.chunk_rows, tunables.hung_chunk_s) as chunk:
            if chunk is None:
                return 0
            started = time.perf_counter()
            results = await self._answer_chunk(chunk)
            finished = await chunk.commit(results)
        verdicts = Counter(result.verdict or "error" for result in results)
        stats = self.stats
        stats.chunks += 1
        stats.rows += len(results)
        stats.busy_s += time.perf_counter() - started
        for verdict, count in verdicts.items():
            stats.verdicts[verdict] = stats.verdicts.get(verdict, 0) + count
        if self.observer is not None:
            self.observer.on_chunk(dict(verdicts))
        if finished:  # counted first: the job is done whatever becomes of its workbook
            await build_when_done(self.store, chunk.job_id)
        return len(results)

    async def _answer_chunk(self, chunk: Chunk) -> list[RowResult]:
        async def answer(request: QueryRequest) -> QueryResult:
            return await self.answer(request, chunk.model, tenant=chunk.tenant)

        return await answer_rows(answer, chunk.texts, self.tunables.concurrency)

    async def run_forever(self) -> None:
        """Work until cancelled: chunks back to back while there are any, polling when idle."""
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                done = await self.run_chunk()
                backoff = FIRST_BACKOFF_S
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a dependency failed: the chunk rolled back; retry later
                self.stats.failed_chunks += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                if self.observer is not None:
                    self.observer.on_chunk(None)
                log.warning("bulk chunk failed, retrying in %.1f s: %s", backoff, self.stats.last_error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if not done:
                await asyncio.sleep(self.tunables.poll_interval_s)
