"""Ingress: Serve wiring around the HTTP API (shim). One ``QueryService`` and ``AdminService`` per replica.

Rules extraction runs here too (``RulesFirstExtraction``): the EntityExtractor deployment is called only
for readings a model may be asked about, which saves a handle hop on most uncached queries.

Pools and clients (asyncpg, redis) are created here, inside the replica; the downstream handles'
failures are turned into domain errors by ``deployments.handles`` and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.handles import ExtractorCall, domain_errors
from deployments.metrics import ExtractorMetrics, IngressMetrics
from deployments.trainer import RayLauncher
from serve_app.api.app import build_http_app
from serve_app.api.parts import Api
from serve_app.config import IngressConfig, IngressTunables
from serve_app.db.announcements import Announcements
from serve_app.db.pool import create_pool
from serve_app.db.redis_client import create_redis
from serve_app.directory.browse import DirectoryBrowser
from serve_app.directory.history import DirectoryHistory, DirectoryInfo
from serve_app.directory.loader import LOADED_CHANNEL
from serve_app.jobs.store import JobStore
from serve_app.models.board import ModelBoard
from serve_app.models.paths import ModelPaths
from serve_app.ops.warming import read_progress
from serve_app.service.admin import AdminService
from serve_app.service.assembly import assemble_query_service
from serve_app.service.tenants import KeyStore
from serve_app.settings import Settings
from serve_app.training.revision import TrainingSetup
from serve_app.training.run_store import TrainingRunStore

log = logging.getLogger(__name__)
REFRESH_S = 2.0  # data version and metrics export


@serve.deployment
@serve.ingress()
class Ingress:
    async def __init__(  # type: ignore[misc]  # Serve awaits an async constructor
        self,
        extractor: DeploymentHandle,
        model_server: DeploymentHandle | None,
        job_worker: DeploymentHandle | None,  # bound here so that Serve deploys it; jobs reach it via PostgreSQL
        config: dict,
        model_paths: ModelPaths | None,
        training: dict | None = None,
    ):
        """``training``: a ``TrainingSetup`` (where adapter revisions train); None with no model replicas."""
        self.config = IngressConfig.model_validate(config)
        self.settings = settings = Settings.for_replica()
        self.model_server = model_server
        self.pool = await create_pool(settings.database_url, settings)
        self.redis = create_redis(settings.redis_url, settings)
        self.metrics = IngressMetrics()
        self.tunables = IngressTunables()
        self.replica_id = serve.get_replica_context().replica_id.unique_id
        # The rules run here; the extraction deployment is called only when a model may be asked.
        self.service = await assemble_query_service(
            self.pool,
            self.redis,
            settings,
            self.tunables,
            ExtractorCall(extractor, lambda: self.tunables.extract_timeout_s),
            observer=ExtractorMetrics(),
            on_result=self.metrics.observe,
        )
        registry = self.service.registry
        check_models = None if model_server is None else self._check_models
        self.admin = AdminService(registry, ModelBoard(self.redis), model_paths, check_models)
        self.browser = DirectoryBrowser(self.pool, settings.db_acquire_timeout_s)
        self.jobs = JobStore(self.pool)
        self.keys = KeyStore(self.pool)
        self.history = DirectoryHistory(self.pool, settings.db_acquire_timeout_s)
        self.training = None
        if model_paths is not None and training is not None:
            launcher = RayLauncher(model_paths, TrainingSetup.model_validate(training))
            self.training = (TrainingRunStore(self.pool), launcher)
        self._exported_version = -1
        self._directory: DirectoryInfo | None = None
        self.service.query_log.start()
        # A directory load is followed at once (cached answers keyed by the version before it stop being
        # served); the poll in ``_refresh`` covers a listener that is down.
        self.announcements = Announcements(settings.database_url, LOADED_CHANNEL, self.service.refresh_data_version)
        with contextlib.suppress(Exception):
            await self.announcements.ensure()
        self._refresh_task = asyncio.get_running_loop().create_task(self._refresh())

    def __serve_build_asgi_app__(self):
        resources = self.config.resources
        api = Api(
            self.service,
            self.admin,
            self.replica_stats,
            self.settings.admin_token,
            self.config,
            browser=self.browser,
            jobs=self.jobs,
            keys=self.keys,
            history=self.history,
            training=self.training,
            build_progress=lambda: read_progress(self.settings.models_dir),
        )
        return build_http_app(api, admission=(resources.max_ongoing_requests, resources.max_queued_requests))

    def reconfigure(self, user_config: dict) -> None:
        self.tunables = IngressTunables.model_validate(user_config)
        self.service.reconfigure(self.tunables)

    async def _check_models(self) -> None:
        assert self.model_server is not None
        with domain_errors("the model replicas", model_replicas=True):
            await self.model_server.check_health.remote()

    async def _refresh(self) -> None:
        database_up = True
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                async with asyncio.timeout(REFRESH_S):
                    await self.announcements.ensure()
                    await self.service.refresh_data_version()
                    if self.service.data_version != self._exported_version:  # counts read once per load
                        self._directory = await self.history.info()
                        self._exported_version = self.service.data_version
                database_up = True
            except Exception as exc:  # noqa: BLE001 - keep the last version while the database is away
                database_up = False
                log.debug("data version refresh failed: %s", exc)
            self.metrics.export(self.service, database_up)
            if self._directory is not None:  # set every tick: Ray drops a gauge no one has set for a while
                self.metrics.export_directory(self._directory)

    def replica_stats(self) -> dict:
        return {"replica": self.replica_id, "tunables": self.tunables.model_dump()} | self.service.stats()

    async def __del__(self) -> None:
        self._refresh_task.cancel()
        await self.announcements.close()
        await self.service.query_log.close()  # graceful shutdown: nothing acknowledged is lost
        await self.pool.close()
        await self.redis.aclose()
