"""EntityExtractor: Serve wiring around an ``ExtractionService`` (shim).

It reads the directory's vocabulary and asks the ModelServer through
a multiplexed handle (one per adapter, cached) when the service calls for the model.
"""

from __future__ import annotations

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.handles import domain_errors
from deployments.metrics import ExtractorMetrics
from serve_app.config import ExtractorTunables
from serve_app.db.pool import create_pool
from serve_app.extraction.service import ExtractionService
from serve_app.models.task import ModelAnswer
from serve_app.settings import Settings


@serve.deployment
class EntityExtractor:
    async def __init__(  # type: ignore[misc]  # Serve awaits an async constructor
        self, model_server: DeploymentHandle | None
    ):
        settings = Settings.for_replica()
        self.model_server = model_server
        self._handles: dict[str, DeploymentHandle] = {}
        self.pool = await create_pool(settings.database_url, settings)
        self.service = await ExtractionService(
            self.pool,
            ExtractorTunables(),
            read_with_model=None if model_server is None else self._read_with_model,
            observer=ExtractorMetrics(),
        ).start()

    def reconfigure(self, user_config: dict) -> None:
        self.service.reconfigure(ExtractorTunables.model_validate(user_config))

    async def extract_entities(self, normalized: str, adapter: str | None, data_version: int | None = None) -> dict:
        """An ``ExtractionOutcome`` as a dict (``data_version``: what the caller will cache it under)."""
        return (await self.service.extract_entities(normalized, adapter, data_version)).model_dump()

    async def _read_with_model(self, normalized: str, adapter: str) -> ModelAnswer:
        handle = self._handles.get(adapter)
        if handle is None:
            assert self.model_server is not None
            handle = self._handles[adapter] = self.model_server.options(multiplexed_model_id=adapter)
            if len(self._handles) > 1024:  # adapter refs change on re-registration: keep the cache bounded
                self._handles.pop(next(iter(self._handles)))
        with domain_errors(f"the model replicas for {adapter!r}", model_replicas=True):
            return ModelAnswer.model_validate(await handle.read.remote(normalized, adapter))

    def stats(self) -> dict:
        return self.service.stats()

    async def __del__(self) -> None:
        await self.pool.close()
