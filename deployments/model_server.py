"""ModelServer: a resident base model with LoRA adapters multiplexed per replica (thin Serve shim).

The engine is created and the base model loaded in the constructor; preload adapters are loaded and one
generation is run before the constructor returns, so a replica is warm before Serve routes to it.
Adapters come in through ``@serve.multiplexed`` (Serve's per-replica LRU; eviction unloads from the
engine) and requests from all adapters share ``@serve.batch`` batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ray import serve

from deployments.metrics import ModelMetrics
from serve_app.config import ModelConfig, ModelTunables
from serve_app.db.pool import create_pool
from serve_app.models.adapters import AdapterRegistry, base_model_identity, validate_adapter
from serve_app.models.engine import AdapterError, GenerationRequest, GenerationResult
from serve_app.models.task import build_prompt, parse_answer
from serve_app.redis_client import create_redis
from serve_app.service.model_board import ModelBoard
from serve_app.settings import Settings

log = logging.getLogger(__name__)
WARMUP_QUERY = "华夏银行江油西山支行"


def make_engine(config: ModelConfig, model_path, max_adapters: int):
    if config.engine == "vllm":
        from serve_app.models.vllm_engine import VLLMEngine

        return VLLMEngine(model_path, max_adapters=max_adapters, dtype=config.dtype,
                          memory_utilization=config.vllm_memory_utilization)  # fmt: skip
    from serve_app.models.hf_engine import HFEngine

    return HFEngine(model_path, device=config.device, dtype=config.dtype)


class _LoadedAdapter:
    """What the multiplexer caches. Serve calls ``__del__`` on eviction; it unloads from the engine once."""

    def __init__(self, server, name: str):  # server: the ModelServer replica that loaded it
        self._server, self.name = server, name
        self._loop = asyncio.get_running_loop()

    def __del__(self) -> None:
        server, self._server = self._server, None
        if server is not None:  # Serve evicted it (garbage collection later finds nothing to do)
            self._loop.call_soon_threadsafe(lambda: self._loop.create_task(server.release(self.name)))


def model_server_deployment(max_adapters: int):
    """The deployment class; the multiplexing bound is part of the class, so it is built from config."""

    @serve.deployment
    class ModelServer:
        async def __init__(self, config: dict):
            self.config = ModelConfig.model_validate(config)
            settings = Settings()
            self.model_path = self.config.model_path or settings.models_dir / "demo-base"
            self.adapter_root = self.config.adapter_root or settings.models_dir / "adapters"
            self.base_names = base_model_identity(self.model_path) | set(self.config.base_model_aliases)
            self.engine = make_engine(self.config, self.model_path, max_adapters)
            await self.engine.start()
            self.pool = await create_pool(_required(settings.database_url, "SERVE_APP_DATABASE_URL"), settings)
            self.registry = AdapterRegistry(self.pool)
            self.board = ModelBoard(create_redis(_required(settings.redis_url, "SERVE_APP_REDIS_URL"), settings))
            self.replica_id = serve.get_replica_context().replica_id.unique_id
            self.tunables = ModelTunables()
            self.counters = {"loads": 0, "hits": 0, "evictions": 0, "failures": 0}
            self.metrics = ModelMetrics()
            self.load_seconds: dict[str, float] = {}
            for name in self.config.preload_adapters:
                await self._load(name)
            await self.engine.generate([GenerationRequest(build_prompt(WARMUP_QUERY), None, 4)])
            self.epoch = await self._read_epoch()
            self._board_task = asyncio.get_running_loop().create_task(self._publish_loop())

        def reconfigure(self, user_config: dict) -> None:
            self.tunables = ModelTunables.model_validate(user_config)
            self.generate_batch.set_max_batch_size(self.tunables.max_batch_size)
            self.generate_batch.set_batch_wait_timeout_s(self.tunables.batch_wait_timeout_s)

        @serve.multiplexed(max_num_models_per_replica=max_adapters)
        async def get_adapter(self, name: str) -> _LoadedAdapter:
            await self._load(name)
            return _LoadedAdapter(self, name)

        async def _load(self, name: str) -> None:
            if name in self.engine.loaded_adapters():  # preloaded: the multiplexer's first call is free
                return
            record = await self.registry.get(name)
            if record is None:
                raise AdapterError(f"no adapter named {name!r} is registered")
            spec = validate_adapter(name, record.path, self.adapter_root, self.model_path, self.base_names)
            started = time.perf_counter()
            try:
                await self.engine.load_adapter(spec)
            except AdapterError:
                self.counters["failures"] += 1
                raise
            self.load_seconds[name] = round(time.perf_counter() - started, 4)
            self.counters["loads"] += 1
            self.metrics.loads.inc(tags={"adapter": name})
            self.metrics.load_seconds.observe(self.load_seconds[name], tags={"adapter": name})

        async def release(self, name: str) -> None:
            await self.engine.unload_adapter(name)
            self.counters["evictions"] += 1
            self.metrics.evictions.inc(tags={"adapter": name})

        async def extract(self, normalized: str, adapter: str | None) -> dict:
            """The model's reading of a query: a ``ModelAnswer`` as a dict (invalid answers say why)."""
            if adapter is not None:
                if adapter in self.engine.loaded_adapters():
                    self.counters["hits"] += 1
                await self.get_adapter(adapter)
            request = GenerationRequest(build_prompt(normalized), adapter, self.tunables.max_new_tokens)
            result = await self.generate_batch(request)
            if isinstance(result, Exception):
                raise result
            return parse_answer(result.text, result.finished).model_dump()

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
        async def generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationResult | Exception]:
            for name in {r.adapter for r in requests if r.adapter}:
                with contextlib.suppress(AdapterError):
                    await self.get_adapter(name)  # evicted since its request arrived: bring it back
            try:
                return await self.engine.generate(requests)
            except AdapterError:
                # Adapters churned under us: serve each request on its own rather than fail the batch.
                results: list[GenerationResult | Exception] = []
                for request in requests:
                    try:
                        if request.adapter:
                            await self.get_adapter(request.adapter)
                        results += await self.engine.generate([request])
                    except AdapterError as exc:
                        results.append(exc)
                return results

        def stats(self) -> dict:
            engine_stats = self.engine.stats()
            return {
                "replica": self.replica_id,
                "engine": self.config.engine,
                "base_model": str(self.model_path),
                "base_loads": engine_stats.base_loads,
                "loaded_adapters": self.engine.loaded_adapters(),
                "max_adapters": max_adapters,
                **self.counters,
                "load_seconds": self.load_seconds,
                "generated_requests": engine_stats.generated_requests,
                "batches": engine_stats.batches,
            }

        async def clear_cache(self) -> None:
            wrapper = getattr(self, "__serve_multiplex_wrapper", None)  # Serve's multiplexer, made lazily
            if wrapper is not None:
                await wrapper.shutdown()  # unloads every adapter through _LoadedAdapter.__del__
            for name in self.engine.loaded_adapters():  # preloaded ones never went through the multiplexer
                await self.release(name)

        async def check_health(self) -> None:
            await self.engine.check_health()

        async def _read_epoch(self) -> int:
            try:
                return await self.board.epoch()
            except Exception:  # noqa: BLE001 - Redis down: stats and clear signals wait for it
                return 0

        async def _publish_loop(self) -> None:
            while True:
                try:
                    epoch = await self.board.epoch()
                    if epoch != self.epoch:
                        self.epoch = epoch
                        await self.clear_cache()
                    await self.board.publish(self.replica_id, self.stats())
                except Exception as exc:  # noqa: BLE001 - keep publishing once Redis is back
                    log.debug("model board unavailable: %s", exc)
                await asyncio.sleep(1.0)

        async def __del__(self) -> None:
            self._board_task.cancel()
            await self.engine.shutdown()
            await self.pool.close()

    return ModelServer


def _required(value: str | None, name: str) -> str:
    if not value:
        raise RuntimeError(f"{name} must be set for Serve replicas (serve-app up sets it)")
    return value
