"""The query path's parts put together once, for every process that answers queries: the ingress
(single queries and batches) and the bulk-job workers. Only where extraction goes past the rules differs
(``delegate``: the extraction deployment, or an in-process service)."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import redis.asyncio as aioredis

from serve_app.config import ExtractorTunables, IngressTunables
from serve_app.extraction.service import ExtractEntities, ExtractionObserver, ExtractionService, RulesFirstExtraction
from serve_app.models.adapters import AdapterRegistry
from serve_app.query.retrieval import BranchRepository
from serve_app.schemas import QueryResult
from serve_app.service.confirmations import ConfirmationStore
from serve_app.service.query_log import QueryLog
from serve_app.service.query_service import QueryService
from serve_app.service.rate_limit import RateLimiter
from serve_app.service.result_cache import ResultCache
from serve_app.settings import Settings


async def assemble_query_service(
    pool: asyncpg.Pool,
    redis: aioredis.Redis | None,
    settings: Settings,
    tunables: IngressTunables,
    delegate: ExtractEntities | None = None,
    observer: ExtractionObserver | None = None,
    on_result: Callable[[QueryResult, bool], None] | None = None,
) -> QueryService:
    """A ``QueryService`` whose rules run in this process and whose model readings go to ``delegate`` (the
    extraction deployment); without one it is rules only, and naming an adapter is ``NoModelDeployment``.
    Its data version is read before it returns. Without ``redis`` the caches are this process's only."""
    rules = await ExtractionService(pool, ExtractorTunables(), observer=observer).start()
    service = QueryService(
        extract_entities=RulesFirstExtraction(rules, delegate or rules.extract_entities),
        repository=BranchRepository(pool, settings.db_acquire_timeout_s),
        result_cache=ResultCache(redis, tunables.result_cache_ttl_s, tunables.local_cache_size),
        rate_limiter=RateLimiter(redis, tunables.rate_limit_per_s, tunables.rate_limit_burst),
        query_log=QueryLog(pool, tunables.query_log_batch, tunables.query_log_interval_s),
        registry=AdapterRegistry(pool),
        on_result=on_result,
        confirmations=ConfirmationStore(pool),
    )
    await service.refresh_data_version()
    return service
