"""EntityExtractor: rules/gazetteer extraction with a shared cache, asking the model where needed (shim).

When the model is asked and how its answer is used: ``serve_app.extraction.model_use`` (shared with the
offline pipeline).
"""

from __future__ import annotations

import logging

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.handles import REPLICA_UNAVAILABLE
from deployments.metrics import ExtractorMetrics
from serve_app.config import ExtractorTunables
from serve_app.db.pool import create_pool
from serve_app.directory.loader import read_data_version
from serve_app.extraction.cache import ExtractionCache
from serve_app.extraction.model_use import adapter_to_ask, combine, rules_outcome
from serve_app.extraction.rules import RulesExtractor
from serve_app.extraction.vocabulary import Vocabulary
from serve_app.models.engine import ModelUnavailableError
from serve_app.models.task import ModelAnswer
from serve_app.redis_client import create_redis
from serve_app.settings import Settings

log = logging.getLogger(__name__)


@serve.deployment
class EntityExtractor:
    async def __init__(self, model_server: DeploymentHandle | None):
        settings = Settings()
        self.model_server = model_server
        pool = await create_pool(settings.database_url, settings)
        try:
            async with pool.acquire() as conn:
                vocabulary = await Vocabulary.from_database(conn)
                data_version = await read_data_version(conn)
        finally:
            await pool.close()
        self.extractor = RulesExtractor(vocabulary)
        self.tunables = ExtractorTunables()
        self.metrics = ExtractorMetrics()
        self.cache = ExtractionCache(
            create_redis(settings.redis_url, settings), data_version, self.tunables.extraction_cache_ttl_s
        )

    def reconfigure(self, user_config: dict) -> None:
        self.tunables = ExtractorTunables.model_validate(user_config)
        self.cache.ttl_s = self.tunables.extraction_cache_ttl_s

    async def extract(self, normalized: str, model: str | None) -> dict:
        rules = await self.cache.get(normalized)
        self.metrics.cache.inc(tags={"outcome": "miss" if rules is None else "hit"})
        if rules is None:
            rules = self.extractor.extract(normalized)
            await self.cache.put(normalized, rules)
        tunables = self.tunables
        adapter = adapter_to_ask(model, rules, tunables.model_fallback_threshold, tunables.default_adapter)
        if adapter is None or self.model_server is None:
            self.metrics.extractions.inc(tags={"source": "rules", "outcome": "not_asked"})
            return rules_outcome(rules).model_dump()
        handle = self.model_server.options(multiplexed_model_id=adapter)
        try:
            answer = ModelAnswer.model_validate(await handle.extract.remote(normalized, adapter))
        except REPLICA_UNAVAILABLE as exc:
            self.metrics.extractions.inc(tags={"source": "model", "outcome": "unavailable"})
            raise ModelUnavailableError(f"no model replica could answer for {adapter!r}; retry shortly") from exc
        outcome = combine(rules, answer, adapter, self.extractor.vocabulary)
        self.metrics.extractions.inc(tags={"source": outcome.source, "outcome": "valid" if answer.valid else "invalid"})
        return outcome.model_dump()

    def stats(self) -> dict:
        cache = self.cache
        return {"extraction_cache": {"hits": cache.hits, "misses": cache.misses, "errors": cache.errors}}
