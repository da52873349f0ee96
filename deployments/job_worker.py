"""JobWorker: Serve wiring around a ``JobRunner`` (shim). Each replica works bulk jobs from PostgreSQL
through the same query path as the ingress (rules here, the extraction deployment for model readings,
the shared result cache). It takes no requests but ``stats``; replicas are a fixed number."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.handles import ExtractorCall
from deployments.metrics import ExtractorMetrics, JobMetrics
from serve_app.config import IngressTunables, JobTunables
from serve_app.db.pool import create_pool
from serve_app.db.redis_client import create_redis
from serve_app.jobs.runner import JobRunner
from serve_app.jobs.store import JobStore
from serve_app.service.assembly import assemble_query_service
from serve_app.settings import Settings


@serve.deployment
class JobWorker:
    async def __init__(self, extractor: DeploymentHandle):  # type: ignore[misc]  # Serve awaits it
        settings = Settings.for_replica()
        self.tunables = JobTunables()
        self.pool = await create_pool(settings.database_url, settings)
        self.redis = create_redis(settings.redis_url, settings)
        self.service = await assemble_query_service(
            self.pool,
            self.redis,
            settings,
            IngressTunables(),
            ExtractorCall(extractor, lambda: self.tunables.extract_timeout_s),
            observer=ExtractorMetrics(),
        )
        self.runner = JobRunner(
            JobStore(self.pool), self.service.answer, self.tunables, JobMetrics(), self.service.refresh_for_chunk
        )
        self._task = asyncio.get_running_loop().create_task(self.runner.run_forever())

    def reconfigure(self, user_config: dict) -> None:
        self.tunables = self.runner.tunables = JobTunables.model_validate(user_config)

    async def check_health(self) -> None:
        if self._task.done():  # the loop only ends by a bug: let Serve replace the replica
            raise RuntimeError(f"the job loop stopped: {self._task.exception()!r}")

    async def stats(self) -> dict:
        return asdict(self.runner.stats) | {"data_version": self.service.data_version}

    async def __del__(self) -> None:
        self._task.cancel()
        await self.pool.close()
        await self.redis.aclose()
