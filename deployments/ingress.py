"""Ingress: Serve wiring around the HTTP API (shim). One ``QueryService`` and ``AdminService`` per replica.

Rules extraction runs here too (``RulesFirstExtraction``): the EntityExtractor deployment is called only
for readings a model may be asked about, which saves a handle hop on most uncached queries.

Pools and clients (asyncpg, redis) are created here, inside the replica; the downstream handles'
failures are turned into domain errors by ``deployments.handles`` and nothing else.
"""

from __future__ import annotations

import asyncio
import logging

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.handles import domain_errors
from deployments.metrics import ExtractorMetrics, IngressMetrics
from serve_app.config import ExtractorTunables, IngressConfig, IngressTunables
from serve_app.db.pool import create_pool
from serve_app.errors import DependencyTimeout
from serve_app.extraction.service import ExtractionService, RulesFirstExtraction
from serve_app.models.adapters import AdapterRegistry
from serve_app.models.paths import ModelPaths
from serve_app.redis_client import create_redis
from serve_app.retrieval import BranchRepository
from serve_app.schemas import ExtractionOutcome
from serve_app.service.admin import AdminService
from serve_app.service.http import build_http_app
from serve_app.service.model_board import ModelBoard
from serve_app.service.query_log import QueryLog
from serve_app.service.query_service import QueryService
from serve_app.service.rate_limit import RateLimiter
from serve_app.service.result_cache import ResultCache
from serve_app.settings import Settings

log = logging.getLogger(__name__)
REFRESH_S = 2.0  # data version and metrics export


@serve.deployment
@serve.ingress()
class Ingress:
    async def __init__(  # type: ignore[misc]  # Serve awaits an async constructor
        self,
        extractor: DeploymentHandle,
        model_server: DeploymentHandle | None,
        config: dict,
        model_paths: ModelPaths | None,
    ):
        self.config = IngressConfig.model_validate(config)
        self.settings = settings = Settings.for_replica()
        self.extractor = extractor
        self.model_server = model_server
        self.pool = await create_pool(settings.database_url, settings)
        self.redis = create_redis(settings.redis_url, settings)
        self.metrics = IngressMetrics()
        self.tunables = tunables = IngressTunables()
        self.replica_id = serve.get_replica_context().replica_id.unique_id
        registry = AdapterRegistry(self.pool)
        # The rules run here; the extraction deployment is called only when a model may be asked.
        rules = await ExtractionService(self.pool, ExtractorTunables(), observer=ExtractorMetrics()).start()
        self.service = QueryService(
            extract_entities=RulesFirstExtraction(rules, self._extract_entities),
            repository=BranchRepository(self.pool, settings.db_acquire_timeout_s),
            result_cache=ResultCache(self.redis, tunables.result_cache_ttl_s, tunables.local_cache_size),
            rate_limiter=RateLimiter(self.redis, tunables.rate_limit_per_s, tunables.rate_limit_burst),
            query_log=QueryLog(self.pool, tunables.query_log_batch, tunables.query_log_interval_s),
            registry=registry,
            on_result=self.metrics.observe,
        )
        check_models = None if model_server is None else self._check_models
        self.admin = AdminService(registry, ModelBoard(self.redis), model_paths, check_models)
        await self.service.refresh_data_version()
        self.service.query_log.start()
        self._refresh_task = asyncio.get_running_loop().create_task(self._refresh())

    def __serve_build_asgi_app__(self):
        resources = self.config.resources
        return build_http_app(
            self.service,
            self.admin,
            self.replica_stats,
            self.settings.admin_token,
            self.config.max_body_bytes,
            admission=(resources.max_ongoing_requests, resources.max_queued_requests),
        )

    def reconfigure(self, user_config: dict) -> None:
        self.tunables = IngressTunables.model_validate(user_config)
        self.service.reconfigure(self.tunables)

    async def _extract_entities(self, normalized: str, adapter: str | None, data_version: int) -> ExtractionOutcome:
        timeout_s = self.tunables.extract_timeout_s
        try:
            async with asyncio.timeout(timeout_s):  # cancelling the response cancels the Serve request
                with domain_errors("entity extraction"):
                    outcome = await self.extractor.extract_entities.remote(normalized, adapter, data_version)
        except TimeoutError as exc:
            raise DependencyTimeout(f"extraction did not finish within {timeout_s:g} s; retry shortly") from exc
        return ExtractionOutcome.model_validate(outcome)

    async def _check_models(self) -> None:
        assert self.model_server is not None
        with domain_errors("the model replicas", model_replicas=True):
            await self.model_server.check_health.remote()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            self.metrics.export(self.service)
            try:
                await self.service.refresh_data_version()
            except Exception as exc:  # noqa: BLE001 - keep the last version while the database is away
                log.debug("data version refresh failed: %s", exc)

    def replica_stats(self) -> dict:
        return {"replica": self.replica_id, "tunables": self.tunables.model_dump()} | self.service.stats()

    async def __del__(self) -> None:
        self._refresh_task.cancel()
        await self.service.query_log.close()  # graceful shutdown: nothing acknowledged is lost
        await self.pool.close()
        await self.redis.aclose()
