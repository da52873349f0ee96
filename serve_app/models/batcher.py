"""Batches formed when the engine is free, not when requests arrive. No Ray.

Serve's ``@serve.batch`` closes a batch ``batch_wait_timeout_s`` after its first request and queues it
behind the running one: requests that trickle in while a CPU batch takes seconds become many small
batches waiting in line (3-4 requests each through the demo's Serve graph, against 16 asked for). Here a
batch is taken only when the previous one has finished: everything waiting, up to ``max_batch_size``. An
idle engine waits ``wait_s`` for company first, so a burst still shares its first batch.

A caller that gives up (its request cancelled) leaves the queue; if its batch is already running, the
batch finishes for the others and its result is dropped (``ModelWorker`` marks its request abandoned,
and the engines stop computing that row).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")

#: Runs one batch; returns one result (or the exception for that request) per request, in order.
RunBatch = Callable[[list[RequestT]], Awaitable[Sequence[ResultT | Exception]]]


class EngineBatcher(Generic[RequestT, ResultT]):
    def __init__(self, run_batch: RunBatch, max_batch_size: int, wait_s: float):
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self._waiting: deque[tuple[RequestT, asyncio.Future]] = deque()
        self._arrived = asyncio.Event()
        self._loop_task: asyncio.Task | None = None

    async def submit(self, request: RequestT) -> ResultT | Exception:
        """The request's result (or its exception, returned, as the engine's batches report it) once a
        batch that holds it has run. Raises only what ``run_batch`` raised for the whole batch."""
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._run_forever())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        self._arrived.set()
        return await future

    def waiting(self) -> int:
        return sum(1 for _, future in self._waiting if not future.done())

    async def _run_forever(self) -> None:
        while True:
            await self._arrived.wait()
            if self.waiting() < self.max_batch_size and self.wait_s > 0:
                await asyncio.sleep(self.wait_s)
            batch = self._take()
            if not self._waiting:
                self._arrived.clear()
            if batch:
                await self._run(batch)

    def _take(self) -> list[tuple[RequestT, asyncio.Future]]:
        batch: list[tuple[RequestT, asyncio.Future]] = []
        while self._waiting and len(batch) < self.max_batch_size:
            request, future = self._waiting.popleft()
            if not future.done():  # a cancelled caller is skipped
                batch.append((request, future))
        return batch

    async def _run(self, batch: list[tuple[RequestT, asyncio.Future]]) -> None:
        try:
            results = await self.run_batch([request for request, _ in batch])
        except Exception as exc:  # noqa: BLE001 - the batch failed as a whole: each caller hears why
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
