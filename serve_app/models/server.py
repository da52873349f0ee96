"""``ModelWorker``: what one model replica does — a resident engine reading queries with adapters. No Ray.

The engine decides how requests are batched (``Engine.schedules_requests``): vLLM's scheduler admits each
request at its next decoding step, so every reading goes to it on its own; an engine that runs one batch at
a time (``HFEngine``) gets an ``EngineBatcher`` in front. ``load`` makes an adapter resident: Serve's
multiplexer in a ``ModelServer`` replica, the residency's own LRU in the CLI and the tests; either way an
adapter is loaded by ``AdapterResidency.acquire`` and nothing else. Each reading is prompted and read in
its adapter's answer format (``task``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence

from serve_app.config import ModelTunables
from serve_app.errors import AdapterError, AdapterNotLoaded
from serve_app.models.batcher import EngineBatcher
from serve_app.models.board import ModelBoard
from serve_app.models.engine import Abandonment, Engine, GenerationRequest, GenerationResult
from serve_app.models.residency import AdapterResidency
from serve_app.models.task import DEFAULT_FORMAT, AnswerFormat, ModelAnswer

log = logging.getLogger(__name__)
WARMUP_QUERY = "华夏银行江油西山支行"
BOARD_INTERVAL_S = 1.0

#: Makes an adapter resident and returns the ref it is held by.
Loader = Callable[[str], Awaitable[str]]


class ModelWorker:
    def __init__(
        self,
        engine: Engine,
        residency: AdapterResidency,
        tunables: ModelTunables,
        engine_kind: str,
        load: Loader | None = None,
        on_batch: Callable[[int], None] | None = None,
    ):
        """``load`` defaults to the residency's own ``acquire``; ``on_batch`` observes the size of each batch
        an ``EngineBatcher`` forms (not called for an engine that schedules requests itself)."""
        self.engine = engine
        self.residency = residency
        self.engine_kind = engine_kind
        self.load: Loader = load or residency.acquire
        self.on_batch = on_batch
        self.batcher: EngineBatcher | None = None
        if not engine.schedules_requests:
            self.batcher = EngineBatcher(self._run_batch, tunables.max_batch_size, tunables.batch_wait_timeout_s)
        self.retune(tunables)
        self.epoch = 0

    def retune(self, tunables: ModelTunables) -> None:
        """Apply new tunables (a replica's ``reconfigure``) to the next reading and the next batch."""
        self.tunables = tunables
        if self.batcher is not None:
            self.batcher.max_batch_size = tunables.max_batch_size
            self.batcher.wait_s = tunables.batch_wait_timeout_s

    async def start(self, preload: Sequence[str]) -> list[str]:
        """Load the base, then each preload adapter, then generate once: warm before the first request.

        A preload adapter that fails to load is logged and skipped (the replica still serves the others
        and the base; the first request for it retries). Returns the names that failed."""
        await self.engine.start()
        failed = []
        for name in preload:
            try:
                await self.load(await self.residency.resolve(name))  # loaded under its ref, as requests ask
            except AdapterError as exc:
                log.error("preload adapter %s not loaded: %s", name, exc)
                failed.append(name)
        await self.engine.generate([GenerationRequest(DEFAULT_FORMAT.prompt(WARMUP_QUERY), None, 4)])
        return failed

    async def read(self, normalized: str, adapter: str) -> ModelAnswer:
        """The model's reading of a query with ``adapter`` (a ref or a name); invalid answers say why."""
        if self.residency.holds(adapter):
            self.residency.stats.hits += 1
        ref = await self.load(adapter)
        answer_format = await self._format_of(ref)
        abandonment = Abandonment()
        request = answer_format.request(normalized, ref, self.tunables.max_new_tokens, abandonment)
        try:
            result = await self.submit(request)
        except asyncio.CancelledError:  # the caller gave up: its row of a running batch stops computing
            abandonment.set()
            raise
        if isinstance(result, Exception):
            raise result
        return answer_format.read(result.text, result.finished)

    async def _format_of(self, ref: str) -> AnswerFormat:
        try:
            return self.residency.answer_format(ref)
        except AdapterNotLoaded:  # the multiplexer returned a ref the residency no longer holds: load it
            return self.residency.answer_format(await self.residency.acquire(ref))

    async def submit(self, request: GenerationRequest) -> GenerationResult | Exception:
        """Generate one request: through the batcher, or straight to an engine that schedules requests."""
        if self.batcher is not None:
            return await self.batcher.submit(request)
        [result] = await self.generate_batch([request])
        return result

    async def _run_batch(self, requests: list[GenerationRequest]) -> list[GenerationResult | Exception]:
        if self.on_batch is not None:
            self.on_batch(len(requests))
        return await self.generate_batch(requests)

    async def generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationResult | Exception]:
        """Generate a batch that may mix adapters. Its adapters are pinned while it runs; one that was
        evicted since its request arrived is loaded again; one that cannot be loaded fails only its rows."""
        refs = {r.adapter for r in requests if r.adapter}
        async with self.residency.using(refs):
            failures: dict[str, Exception] = {}
            held: dict[str, str] = {}
            for ref in refs:
                try:
                    held[ref] = await self.load(ref)
                except AdapterError as exc:
                    failures[ref] = exc
            runnable = [_held_as(r, held) for r in requests if r.adapter not in failures]
            try:
                outputs = await self.engine.generate(runnable) if runnable else []
            except AdapterNotLoaded:
                # The outer residency policy and the engine disagree (it should not happen: say so, and
                # serve the batch from the residency directly rather than fail it).
                log.warning("adapters of a batch were not loaded; loading them directly")
                for ref in {r.adapter for r in runnable if r.adapter}:
                    await self.residency.acquire(ref)
                outputs = await self.engine.generate(runnable)
            generated = iter(outputs)
        return [failures[r.adapter] if r.adapter in failures else next(generated) for r in requests]

    def stats(self, replica_id: str) -> dict:
        engine_stats = self.engine.stats()
        adapters = self.residency.stats
        return {
            "replica": replica_id,
            "engine": self.engine_kind,
            "base_model": str(self.residency.paths.base),
            "base_loads": engine_stats.base_loads,
            "cpu_threads": engine_stats.cpu_threads,
            "loaded_adapters": self.residency.resident,
            "loads": adapters.loads,
            "hits": adapters.hits,
            "evictions": adapters.evictions,
            "failures": adapters.failures,
            "load_seconds": adapters.load_seconds,
            "generated_requests": engine_stats.generated_requests,
            "batches": engine_stats.batches,
        }

    async def watch_board(self, board: ModelBoard, replica_id: str, clear: Callable[[], Awaitable[None]]) -> None:
        """Forever: publish stats to the board, and ``clear`` adapters when the board's epoch moves."""
        try:
            self.epoch = await board.epoch()
        except Exception:  # noqa: BLE001 - Redis down: stats and clear signals wait for it
            self.epoch = 0
        while True:
            try:
                epoch = await board.epoch()
                if epoch != self.epoch:
                    self.epoch = epoch
                    await clear()
                await board.publish(replica_id, self.stats(replica_id))
            except Exception as exc:  # noqa: BLE001 - keep publishing once Redis is back
                log.debug("model board unavailable: %s", exc)
            await asyncio.sleep(BOARD_INTERVAL_S)


def _held_as(request: GenerationRequest, held: dict[str, str]) -> GenerationRequest:
    """``request`` naming the ref its adapter is held by (a stale revision maps to the current one)."""
    if request.adapter is None or held.get(request.adapter, request.adapter) == request.adapter:
        return request
    return dataclasses.replace(request, adapter=held[request.adapter])
