"""Ingress: the HTTP entry point (shim). Builds the Starlette app over a ``QueryService`` per replica.

Pools and clients (asyncpg, redis) are created here, inside the replica. Ray-specific failures of the
downstream handles are turned into API errors here, so ``serve_app`` stays free of Ray.
"""

from __future__ import annotations

import asyncio
import logging

from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from redis.exceptions import RedisError

from deployments.handles import REPLICA_UNAVAILABLE
from deployments.metrics import IngressMetrics
from serve_app.config import IngressTunables
from serve_app.db.pool import create_pool
from serve_app.models.adapters import AdapterIn, AdapterOut, AdapterRegistry, validate_adapter
from serve_app.models.engine import AdapterError, ModelUnavailableError
from serve_app.redis_client import create_redis
from serve_app.retrieval import BranchRepository
from serve_app.schemas import ExtractionOutcome
from serve_app.service.errors import ApiError, unavailable
from serve_app.service.http import build_http_app
from serve_app.service.model_board import ModelBoard
from serve_app.service.query_log import QueryLog
from serve_app.service.query_service import QueryService, database_errors
from serve_app.service.rate_limit import RateLimiter
from serve_app.service.result_cache import ResultCache
from serve_app.settings import Settings

log = logging.getLogger(__name__)
REFRESH_S = 2.0  # data version and metrics export
REGISTRY = "the adapter registry (PostgreSQL)"


@serve.deployment
@serve.ingress()
class Ingress:
    async def __init__(
        self, extractor: DeploymentHandle, model_server: DeploymentHandle | None, max_body_bytes: int, model_paths: dict
    ):
        self.settings = settings = Settings()
        self.extractor = extractor
        self.model_server = model_server
        self.max_body_bytes = max_body_bytes
        self.adapter_root, self.base_model = model_paths.get("adapter_root"), model_paths.get("model_path")
        self.pool = await create_pool(settings.database_url, settings)
        self.redis = create_redis(settings.redis_url, settings)
        self.board = ModelBoard(self.redis)
        self.registry = AdapterRegistry(self.pool)
        self.metrics = IngressMetrics()
        self.tunables = tunables = IngressTunables()
        self.replica_id = serve.get_replica_context().replica_id.unique_id

        self.service = QueryService(
            extract=self._extract,
            repository=BranchRepository(self.pool, settings.db_acquire_timeout_s),
            result_cache=ResultCache(self.redis, tunables.result_cache_ttl_s, tunables.local_cache_size),
            rate_limiter=RateLimiter(self.redis, tunables.rate_limit_per_s, tunables.rate_limit_burst),
            query_log=QueryLog(self.pool, tunables.query_log_batch, tunables.query_log_interval_s),
            registry=self.registry,
            on_result=self.metrics.observe,
        )
        await self.service.refresh_data_version()
        self.service.query_log.start()
        self._refresh_task = asyncio.get_running_loop().create_task(self._refresh())

    def __serve_build_asgi_app__(self):
        return build_http_app(self.service, self, self.settings.admin_token, self.max_body_bytes)

    def reconfigure(self, user_config: dict) -> None:
        tunables = IngressTunables.model_validate(user_config)
        service = self.service
        service.rate_limiter.rate_per_s = tunables.rate_limit_per_s
        service.rate_limiter.burst = tunables.rate_limit_burst
        service.result_cache.ttl_s = tunables.result_cache_ttl_s
        service.result_cache.local_size = tunables.local_cache_size
        service.query_log.batch_size = tunables.query_log_batch
        service.query_log.interval_s = tunables.query_log_interval_s
        self.tunables = tunables

    async def _extract(self, normalized: str, model: str | None) -> ExtractionOutcome:
        timeout_s = self.tunables.extract_timeout_s
        try:
            async with asyncio.timeout(timeout_s):  # cancelling the response cancels the Serve request
                outcome = await self.extractor.extract.remote(normalized, model)
            return ExtractionOutcome.model_validate(outcome)
        except BackPressureError as exc:
            raise ApiError(
                503, "overloaded", "the service is at capacity; retry shortly", {"Retry-After": "1"}
            ) from exc
        except ModelUnavailableError as exc:
            raise ApiError(503, "model_unavailable", str(exc), {"Retry-After": "1"}) from exc
        except REPLICA_UNAVAILABLE as exc:
            raise unavailable("entity extraction") from exc
        except AdapterError as exc:
            raise ApiError(422, "adapter_unusable", str(exc)) from exc
        except TimeoutError as exc:
            raise ApiError(
                504, "timeout", f"extraction did not finish within {timeout_s:g} s; retry shortly", {"Retry-After": "1"}
            ) from exc

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            self.metrics.export(self.service)
            try:
                await self.service.refresh_data_version()
            except Exception as exc:  # noqa: BLE001 - keep the last version while the database is away
                log.debug("data version refresh failed: %s", exc)

    # --- AdminOps -----------------------------------------------------------------------------------

    async def model_cache_stats(self) -> dict:
        try:
            replicas = await self.board.replicas()
        except (RedisError, OSError) as exc:
            raise unavailable("model statistics (Redis)") from exc
        return {"replicas": replicas, "model_deployment": self.model_server is not None}

    async def clear_model_cache(self) -> dict:
        try:
            epoch = await self.board.bump_epoch()
        except (RedisError, OSError) as exc:
            raise unavailable("the model cache signal (Redis)") from exc
        return {"cleared": True, "epoch": epoch, "note": "model replicas unload their adapters within ~1 s"}

    async def models_ready(self) -> bool:
        if self.model_server is None:
            return True
        try:
            await self.model_server.check_health.remote()
        except Exception:  # noqa: BLE001 - not ready, whatever the reason
            return False
        return True

    async def list_adapters(self) -> list[AdapterOut]:
        with database_errors(REGISTRY):
            return await self.registry.list()

    async def register_adapter(self, adapter: AdapterIn) -> AdapterOut:
        if self.adapter_root is None or self.base_model is None:
            raise ApiError(409, "no_model", "this application runs without model replicas")
        try:
            spec = await asyncio.to_thread(
                validate_adapter, adapter.name, adapter.path, self.adapter_root, self.base_model
            )
            with database_errors(REGISTRY):
                return await self.registry.register(spec, adapter.path)
        except AdapterError as exc:
            status = 409 if "already registered" in str(exc) else 422
            raise ApiError(status, "adapter_rejected", str(exc)) from exc

    async def delete_adapter(self, name: str) -> bool:
        with database_errors(REGISTRY):
            return await self.registry.delete(name)

    def service_stats(self) -> dict:
        service = self.service
        return {
            "replica": self.replica_id,
            "tunables": self.tunables.model_dump(),
            "result_cache": vars(service.result_cache.stats),
            "rate_limit": vars(service.rate_limiter.stats),
            "query_log": {
                "written": service.query_log.written,
                "pending": service.query_log.pending,
                "dropped": service.query_log.dropped,
                "rejected": service.query_log.rejected,
                "failures": service.query_log.failures,
            },
            "data_version": service.data_version,
        }

    async def __del__(self) -> None:
        self._refresh_task.cancel()
        await self.service.query_log.close()  # graceful shutdown: nothing acknowledged is lost
        await self.pool.close()
        await self.redis.aclose()
