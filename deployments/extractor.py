"""EntityExtractor: rules/gazetteer extraction with a shared cache, asking the model where needed (shim).

The model is asked when the request names an adapter, or when the rules' confidence is under the
threshold and a default adapter is configured. Its answer replaces the rules' entities only when valid;
otherwise the rules result stands and the response carries no model source.
"""

from __future__ import annotations

import logging

from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.config import ExtractorTunables
from serve_app.db.pool import create_pool
from serve_app.extraction.cache import ExtractionCache
from serve_app.extraction.rules import RulesExtractor
from serve_app.extraction.vocabulary import Vocabulary
from serve_app.models.task import ModelAnswer
from serve_app.redis_client import create_redis
from serve_app.schemas import ExtractionOutcome
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
                data_version = int(await conn.fetchval("SELECT value FROM directory_meta WHERE key = 'data_version'"))
        finally:
            await pool.close()
        self.extractor = RulesExtractor(vocabulary)
        self.tunables = ExtractorTunables()
        self.cache = ExtractionCache(
            create_redis(settings.redis_url, settings), data_version, self.tunables.extraction_cache_ttl_s
        )

    def reconfigure(self, user_config: dict) -> None:
        self.tunables = ExtractorTunables.model_validate(user_config)
        self.cache.ttl_s = self.tunables.extraction_cache_ttl_s

    async def extract(self, normalized: str, model: str | None) -> dict:
        rules = await self.cache.get(normalized)
        if rules is None:
            rules = self.extractor.extract(normalized)
            await self.cache.put(normalized, rules)
        adapter = model
        if adapter is None and rules.confidence < self.tunables.model_fallback_threshold:
            adapter = self.tunables.default_adapter
        outcome = ExtractionOutcome(entities=rules.entities, source="rules", confidence=rules.confidence)
        if adapter is None or self.model_server is None:
            return outcome.model_dump()
        handle = self.model_server.options(multiplexed_model_id=adapter)
        answer = ModelAnswer.model_validate(await handle.extract.remote(normalized, adapter))
        if not answer.valid:
            return outcome.model_copy(update={"model": adapter, "model_error": answer.error}).model_dump()
        entities = answer.entities
        if entities.bank and entities.bank in self.extractor.vocabulary.banks:
            entities = entities.model_copy(
                update={"bank_code": self.extractor.vocabulary.banks[entities.bank].category_code}
            )
        return ExtractionOutcome(
            entities=entities, source="model", model=adapter, confidence=rules.confidence
        ).model_dump()

    def stats(self) -> dict:
        cache = self.cache
        return {"extraction_cache": {"hits": cache.hits, "misses": cache.misses, "errors": cache.errors}}
