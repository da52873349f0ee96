"""ModelServer: Serve wiring around a ``ModelWorker`` (shim).

The worker's engine is started, its preload adapters loaded and one generation run in the constructor,
so a replica is warm before Serve routes to it. Serve's multiplexer (applied in ``__init__``, bounded by
``max_adapters_per_replica``) decides residency and routes requests for an adapter to replicas that hold
it. How requests are batched is the engine's (``ModelWorker``): vLLM schedules each one itself; HFEngine
gets an ``EngineBatcher`` that takes a batch whenever the engine is free (``@serve.batch`` closes batches as
requests arrive, which made 3-4-request batches here).
"""

from __future__ import annotations

import asyncio

from ray import serve

from deployments.metrics import ModelMetrics
from serve_app.config import ModelConfig, ModelTunables
from serve_app.db.pool import create_pool
from serve_app.db.redis_client import create_redis
from serve_app.models.adapters import AdapterRegistry
from serve_app.models.board import ModelBoard
from serve_app.models.engines import make_engine
from serve_app.models.paths import ModelPaths
from serve_app.models.residency import AdapterResidency
from serve_app.models.server import ModelWorker
from serve_app.settings import Settings


class _Resident:
    """What the multiplexer caches for one adapter id. Serve awaits ``__del__`` when it evicts the entry:
    an instance attribute, not a finalizer, so garbage collection never calls it a second time. An entry
    for a stale ref (``job_22@3`` asked for, ``job_22@4`` held) does not own what it points at: only the
    entry under the held ref unloads it."""

    def __init__(self, residency: AdapterResidency, requested: str, ref: str):
        self.ref = ref

        async def unload() -> None:
            if requested == ref:
                await residency.release(ref)

        self.__del__ = unload


@serve.deployment
class ModelServer:
    async def __init__(  # type: ignore[misc]  # Serve awaits an async constructor
        self, config: dict, paths: ModelPaths
    ):
        self.config = ModelConfig.model_validate(config)
        settings = Settings.for_replica()
        self.pool = await create_pool(settings.database_url, settings)
        self.registry = AdapterRegistry(self.pool)
        self.board = ModelBoard(create_redis(settings.redis_url, settings))
        self.metrics = ModelMetrics()
        engine = make_engine(self.config, paths)
        residency = AdapterResidency(engine, self.registry, paths, on_event=self.metrics.on_adapter_event)
        self.replica_id = serve.get_replica_context().replica_id.unique_id

        async def load(ref: str) -> _Resident:
            return _Resident(residency, ref, await residency.acquire(ref))

        self._load = load
        self._multiplexed = serve.multiplexed(max_num_models_per_replica=self.config.max_adapters_per_replica)(load)
        self.worker = ModelWorker(
            engine, residency, self.config.tunables, self.config.engine, load=self._acquire,
            on_batch=self.metrics.batch_size.observe,
        )  # fmt: skip
        self.failed_preloads = await self.worker.start(self.config.preload_adapters)
        self._board_task = asyncio.get_running_loop().create_task(
            self.worker.watch_board(self.board, self.replica_id, self.clear_cache)
        )

    def reconfigure(self, user_config: dict) -> None:
        tunables = ModelTunables.model_validate(user_config)
        self.config.check_tunables(tunables)
        self.worker.retune(tunables)

    async def _acquire(self, ref: str) -> str:
        return (await self._multiplexed(ref)).ref

    async def read(self, normalized: str, adapter: str) -> dict:
        """The model's reading of a query: a ``ModelAnswer`` as a dict."""
        return (await self.worker.read(normalized, adapter)).model_dump()

    def stats(self) -> dict:
        return self.worker.stats(self.replica_id) | {
            "max_adapters": self.config.max_adapters_per_replica,
            "failed_preloads": self.failed_preloads,
        }

    async def clear_cache(self) -> None:
        wrapper = getattr(self._load, "__serve_multiplex_wrapper", None)  # made lazily on the first call
        if wrapper is not None:
            await wrapper.shutdown()  # unloads every adapter through _Resident.__del__
        await self.worker.residency.clear()  # anything the worker loaded past the multiplexer (its fallback)

    async def check_health(self) -> None:
        await self.worker.engine.check_health()

    async def __del__(self) -> None:
        self._board_task.cancel()
        await self.worker.engine.shutdown()
        await self.pool.close()
