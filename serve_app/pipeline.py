"""The query pipeline — normalize → extract → retrieve — as one object, without Ray.

The CLI runs it directly; the Serve deployments run the same code split across replicas. Nothing here
raises for odd input: text that normalizes to nothing, or matches nothing, is a ``none`` verdict.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import asyncpg

from serve_app.directory.codes import find_code
from serve_app.directory.loader import read_data_version
from serve_app.extraction.cache import ExtractionCache
from serve_app.extraction.model_use import adapter_to_ask, combine, rules_outcome
from serve_app.extraction.rules import RulesExtractor
from serve_app.extraction.vocabulary import Vocabulary
from serve_app.models.adapter_cache import AdapterCache
from serve_app.models.adapters import AdapterRegistry, validate_adapter
from serve_app.models.engine import AdapterError, GenerationRequest
from serve_app.models.task import build_prompt, parse_answer
from serve_app.normalize import normalize
from serve_app.retrieval import BranchRepository, Retrieval
from serve_app.schemas import Entities, Extraction, ExtractionOutcome, QueryRequest, QueryResult
from serve_app.verdict import judge, judge_code


class LocalModel:
    """An engine with adapters from the registry, in this process (the offline stand-in for ModelServer)."""

    def __init__(self, adapters: AdapterCache, registry: AdapterRegistry, adapter_root, base_model, max_new_tokens=64):
        self.adapters = adapters
        self.registry = registry
        self.adapter_root = adapter_root
        self.base_model = base_model
        self.max_new_tokens = max_new_tokens

    async def known(self, name: str) -> bool:
        return await self.registry.get(name) is not None

    async def answer(self, normalized: str, adapter: str):
        record = await self.registry.get(adapter)
        if record is None:
            raise AdapterError(f"no adapter named {adapter!r} is registered")
        await self.adapters.acquire(validate_adapter(adapter, record.path, self.adapter_root, self.base_model))
        [result] = await self.adapters.engine.generate(
            [GenerationRequest(build_prompt(normalized), adapter, self.max_new_tokens)]
        )
        return parse_answer(result.text, result.finished)


class QueryPipeline:
    def __init__(
        self,
        extractor: RulesExtractor,
        repository: BranchRepository,
        extraction_cache: ExtractionCache | None = None,
        model: LocalModel | None = None,
        model_fallback_threshold: float = 0.5,
        default_adapter: str | None = None,
    ):
        self.extractor = extractor
        self.repository = repository
        self.extraction_cache = extraction_cache
        self.model = model
        self.model_fallback_threshold = model_fallback_threshold
        self.default_adapter = default_adapter

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

    async def outcome(self, normalized: str, model: str | None) -> ExtractionOutcome:
        """Rules, then the model where the request or a low confidence calls for it (as the service does)."""
        rules = await self.extract(normalized)
        adapter = adapter_to_ask(model, rules, self.model_fallback_threshold, self.default_adapter)
        if adapter is None:
            return rules_outcome(rules)
        if self.model is None:
            raise AdapterError("no model is loaded in this process")
        answer = await self.model.answer(normalized, adapter)
        return combine(rules, answer, adapter, self.extractor.vocabulary)

    async def run(self, request: QueryRequest) -> QueryResult:
        started = time.perf_counter()
        normalized = normalize(request.query)
        timings = {"normalize": _ms_since(started)}
        result = await answer(self.outcome, self.repository, request, normalized, timings)
        result.timings_ms["total"] = _ms_since(started)
        return result


ExtractFn = Callable[[str, str | None], Awaitable[ExtractionOutcome]]
#: Candidates judged per query; more than ``top_k`` so that rivals of the best one are seen.
CANDIDATES = 20


async def answer(
    extract: ExtractFn, repository: BranchRepository, request: QueryRequest, normalized: str, timings: dict
) -> QueryResult:
    """Extract (however ``extract`` does it: in-process, or a deployment handle), retrieve, judge.

    The one query path: the offline pipeline and the service's ingress both end here. A query that is or
    carries a 12-digit code is answered by the code (checked, then looked up), the text only confirming it.
    """
    mark = time.perf_counter()
    code = find_code(request.query)
    if normalized and not (code is not None and code.whole_query):  # a bare code names no branch words
        outcome = await extract(normalized, request.model)
    else:
        outcome = ExtractionOutcome(entities=Entities(), source="rules", confidence=0.0)
    timings["extract"] = _ms_since(mark)
    mark = time.perf_counter()
    if code is not None:
        record = await repository.by_code(code.code) if code.valid else None
        judgement = judge_code(code, record, outcome.entities)
    else:
        retrieval = await repository.search(outcome.entities, normalized, CANDIDATES) if normalized else Retrieval([])
        judgement = judge(outcome.entities, retrieval, request.top_k, outcome.other_bank)
    timings["retrieve"] = _ms_since(mark)
    return QueryResult(
        query=request.query,
        normalized=normalized,
        entities=outcome.entities,
        verdict=judgement.verdict,
        reason=judgement.reason,
        matches=judgement.matches,
        source=outcome.source,
        model=outcome.model,
        timings_ms=timings,
    )


async def build_pipeline(
    pool: asyncpg.Pool, extraction_cache_redis=None, model: LocalModel | None = None
) -> QueryPipeline:
    """A pipeline over the directory in ``pool``'s database; the vocabulary is read from it once."""
    async with pool.acquire() as conn:
        vocabulary = await Vocabulary.from_database(conn)
        data_version = await read_data_version(conn)
    cache = None if extraction_cache_redis is None else ExtractionCache(extraction_cache_redis, data_version)
    return QueryPipeline(RulesExtractor(vocabulary), BranchRepository(pool), cache, model)


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
