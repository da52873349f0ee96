"""The query pipeline — normalize → extract → retrieve — as one object, without Ray.

The CLI runs it directly; the Serve deployments run the same code split across replicas. Nothing here
raises for odd input: text that normalizes to nothing, or matches nothing, gives an empty ``matches``.
"""

from __future__ import annotations

import time

import asyncpg

from serve_app.extraction.cache import ExtractionCache
from serve_app.extraction.rules import RulesExtractor
from serve_app.extraction.vocabulary import Vocabulary
from serve_app.normalize import normalize
from serve_app.retrieval import BranchRepository
from serve_app.schemas import Entities, Extraction, QueryRequest, QueryResult


class QueryPipeline:
    def __init__(
        self,
        extractor: RulesExtractor,
        repository: BranchRepository,
        extraction_cache: ExtractionCache | None = None,
    ):
        self.extractor = extractor
        self.repository = repository
        self.extraction_cache = extraction_cache

    async def extract(self, normalized: str) -> Extraction:
        """Rules extraction, through the shared cache when there is one."""
        if self.extraction_cache is not None:
            cached = await self.extraction_cache.get(normalized)
            if cached is not None:
                return cached
        extraction = self.extractor.extract(normalized)
        if self.extraction_cache is not None:
            await self.extraction_cache.put(normalized, extraction)
        return extraction

    async def run(self, request: QueryRequest) -> QueryResult:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        normalized = normalize(request.query)
        timings["normalize"] = _ms_since(started)

        mark = time.perf_counter()
        extraction = await self.extract(normalized) if normalized else None
        timings["extract"] = _ms_since(mark)

        mark = time.perf_counter()
        entities = extraction.entities if extraction else Entities()
        matches = await self.repository.search(entities, normalized, request.top_k) if normalized else []
        timings["retrieve"] = _ms_since(mark)
        timings["total"] = _ms_since(started)
        return QueryResult(
            query=request.query,
            normalized=normalized,
            entities=entities,
            matches=matches,
            source="rules",
            model=None,
            timings_ms=timings,
        )


async def build_pipeline(pool: asyncpg.Pool, extraction_cache_redis=None) -> QueryPipeline:
    """A pipeline over the directory in ``pool``'s database; the vocabulary is read from it once."""
    async with pool.acquire() as conn:
        vocabulary = await Vocabulary.from_database(conn)
        data_version = int(await conn.fetchval("SELECT value FROM directory_meta WHERE key = 'data_version'"))
    cache = None if extraction_cache_redis is None else ExtractionCache(extraction_cache_redis, data_version)
    return QueryPipeline(RulesExtractor(vocabulary), BranchRepository(pool), cache)


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
