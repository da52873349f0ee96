"""The bulk worker's loop: claim a chunk, answer its rows through the query path, commit, repeat.

Rows of a chunk are answered ``concurrency`` at a time, and a text that repeats within the chunk
(statement files name the same counterparty banks again and again) is asked once. The answering itself
is the service's own path (``QueryService.answer``: result cache, rules, model, retrieval, verdict).
When a dependency fails the chunk is rolled back and retried after a pause; the rows are never marked
with a transient error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from serve_app.config import JobTunables
from serve_app.jobs.results import RowResult, answer_row
from serve_app.jobs.store import Chunk, JobStore
from serve_app.schemas import QueryRequest, QueryResult

log = logging.getLogger(__name__)

#: Answers one request, extracting with the adapter named (None: the service's default path).
AnswerWith = Callable[[QueryRequest, str | None], Awaitable[QueryResult]]
#: Pause after a chunk failed for a dependency, doubled per failure up to ``MAX_BACKOFF_S``.
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0


@dataclass
class RunnerStats:
    chunks: int = 0
    rows: int = 0
    failed_chunks: int = 0
    last_error: str | None = None
    busy_s: float = 0.0
    verdicts: dict[str, int] = field(default_factory=dict)


class JobRunner:
    def __init__(self, store: JobStore, answer: AnswerWith, tunables: JobTunables):
        self.store = store
        self.answer = answer
        self.tunables = tunables
        self.stats = RunnerStats()

    async def run_chunk(self) -> int:
        """Claim, answer and commit one chunk; the rows done (0: no work). Errors propagate, rolled back."""
        tunables = self.tunables
        async with self.store.claim(tunables.chunk_rows, tunables.hung_chunk_s) as chunk:
            if chunk is None:
                return 0
            started = time.perf_counter()
            await chunk.commit(await self._answer_chunk(chunk))
        self.stats.chunks += 1
        self.stats.rows += len(chunk.row_numbers)
        self.stats.busy_s += time.perf_counter() - started
        return len(chunk.row_numbers)

    async def _answer_chunk(self, chunk: Chunk) -> list[RowResult]:
        slots = asyncio.Semaphore(self.tunables.concurrency)

        async def answer(request: QueryRequest) -> QueryResult:
            return await self.answer(request, chunk.model)

        async def one(text: str) -> RowResult:
            async with slots:
                return await answer_row(answer, text)

        distinct = list(dict.fromkeys(chunk.texts))
        async with asyncio.TaskGroup() as group:
            tasks = {text: group.create_task(one(text)) for text in distinct}
        results = [tasks[text].result() for text in chunk.texts]
        for result in results:
            key = result.verdict or "error"
            self.stats.verdicts[key] = self.stats.verdicts.get(key, 0) + 1
        return results

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
                log.warning("bulk chunk failed, retrying in %.1f s: %s", backoff, self.stats.last_error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if not done:
                await asyncio.sleep(self.tunables.poll_interval_s)
