"""JobWorker: Serve wiring around a ``JobRunner`` (shim). Each replica works bulk jobs from PostgreSQL
through the same query path as the ingress (rules here, the extraction deployment for model readings,
the shared result cache). It takes no requests but ``stats``; replicas are a fixed number."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.handles import ExtractorCall
from deployments.metrics import ExtractorMetrics, JobMetrics
from serve_app.config import IngressTunables, JobTunables, RetentionPolicy
from serve_app.db.pool import create_pool
from serve_app.db.redis_client import create_redis
from serve_app.jobs.runner import JobRunner
from serve_app.jobs.store import JobStore
from serve_app.ops.retention import sweep
from serve_app.service.assembly import assemble_query_service
from serve_app.settings import Settings

log = logging.getLogger(__name__)
METRICS_REFRESH_S = 5.0


@serve.deployment
class JobWorker:
    async def __init__(self, extractor: DeploymentHandle, retention: dict | None = None):  # type: ignore[misc]
        settings = Settings.for_replica()
        self.retention = RetentionPolicy.model_validate(retention or {})
        self.metrics = JobMetrics()
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
            JobStore(self.pool), self.service.answer, self.tunables, self.metrics, self.service.refresh_for_chunk
        )
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self.runner.run_forever())
        self._sweeper = loop.create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        """The retention sweep, now and every ``sweep_interval_s`` (one replica at a time does the work); its
        gauge is set again every few seconds (Ray drops a gauge no one has set for a while)."""
        last: dict[str, int] = {"query_log": 0, "jobs": 0, "job_rows": 0}
        next_sweep = 0.0
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + self.retention.sweep_interval_s
                try:
                    last = await sweep(self.pool, self.retention) or last
                except Exception as exc:  # noqa: BLE001 - a failed sweep is tried again at the next interval
                    log.warning("retention sweep failed: %s", exc)
            self.metrics.on_sweep(last)
            await asyncio.sleep(min(METRICS_REFRESH_S, self.retention.sweep_interval_s))

    def reconfigure(self, user_config: dict) -> None:
        self.tunables = self.runner.tunables = JobTunables.model_validate(user_config)

    async def check_health(self) -> None:
        if self._task.done():  # the loop only ends by a bug: let Serve replace the replica
            raise RuntimeError(f"the job loop stopped: {self._task.exception()!r}")

    async def stats(self) -> dict:
        return asdict(self.runner.stats) | {"data_version": self.service.data_version}

    async def __del__(self) -> None:
        self._task.cancel()
        self._sweeper.cancel()
        await self.pool.close()
        await self.redis.aclose()
