"""EngineBatcher: batches are formed when the engine is free. The engine is a fake, named as such."""

from __future__ import annotations

import asyncio

import pytest

from serve_app.models.batcher import EngineBatcher


class FakeEngine:
    """Records each batch; a batch runs until ``release`` is set (when ``gated``)."""

    def __init__(self, gated: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.running = asyncio.Event()
        if not gated:
            self.release.set()

    async def run_batch(self, requests: list[int]) -> list[int | Exception]:
        self.batches.append(requests)
        self.running.set()
        await self.release.wait()
        return [ValueError(f"odd {r}") if r < 0 else r * 10 for r in requests]


async def test_requests_arriving_during_a_batch_share_the_next_one() -> None:
    engine = FakeEngine(gated=True)
    batcher = EngineBatcher(engine.run_batch, max_batch_size=16, wait_s=0.01)
    first = asyncio.create_task(batcher.submit(1))
    await engine.running.wait()
    later = [asyncio.create_task(batcher.submit(n)) for n in range(2, 9)]
    for _ in range(5):  # arrivals spread over time, as through Serve
        await asyncio.sleep(0.02)
    engine.release.set()
    assert await first == 10
    assert await asyncio.gather(*later) == [n * 10 for n in range(2, 9)]
    assert engine.batches == [[1], list(range(2, 9))]  # @serve.batch would have made one batch per arrival


async def test_an_idle_burst_shares_its_first_batch_and_the_size_is_bounded() -> None:
    engine = FakeEngine()
    batcher = EngineBatcher(engine.run_batch, max_batch_size=4, wait_s=0.05)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(10)))
    assert results == [n * 10 for n in range(10)]
    assert engine.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


async def test_a_cancelled_caller_leaves_the_queue_and_the_others_are_answered() -> None:
    engine = FakeEngine(gated=True)
    batcher = EngineBatcher(engine.run_batch, max_batch_size=8, wait_s=0.0)
    first = asyncio.create_task(batcher.submit(1))
    await engine.running.wait()
    gone, kept = asyncio.create_task(batcher.submit(2)), asyncio.create_task(batcher.submit(3))
    await asyncio.sleep(0.01)
    gone.cancel()
    engine.release.set()
    assert (await first, await kept) == (10, 30)
    assert engine.batches == [[1], [3]]


async def test_errors_reach_their_own_callers() -> None:
    engine = FakeEngine()
    batcher = EngineBatcher(engine.run_batch, max_batch_size=8, wait_s=0.01)
    results = await asyncio.gather(batcher.submit(2), batcher.submit(-1))
    assert results[0] == 20 and isinstance(results[1], ValueError)

    async def broken(requests: list[int]) -> list[int]:
        raise RuntimeError("engine died")

    failing = EngineBatcher(broken, max_batch_size=8, wait_s=0.01)
    outcomes = await asyncio.gather(failing.submit(1), failing.submit(2), return_exceptions=True)
    assert [str(o) for o in outcomes] == ["engine died", "engine died"]
    assert await asyncio.wait_for(batcher.submit(4), 1) == 40  # the first batcher still runs
    with pytest.raises(RuntimeError):
        await failing.submit(3)  # and the failing one keeps answering (with its failure)
