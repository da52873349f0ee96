"""The query path — normalize → extract → retrieve → judge — and the pipeline that runs it without Ray.

The CLI runs ``QueryPipeline`` directly; the Serve deployments run the same ``answer`` and the same
``ExtractionService``, split across replicas. Nothing here raises for odd input: text that normalizes
to nothing, or matches nothing, is a ``none`` verdict.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import asyncpg

from serve_app.config import ExtractorTunables
from serve_app.directory.codes import find_code
from serve_app.extraction.rules import RulesExtractor
from serve_app.extraction.service import ExtractionService, ModelReader
from serve_app.normalize import normalize
from serve_app.retrieval import BranchRepository, Retrieval
from serve_app.schemas import Entities, ExtractionOutcome, QueryRequest, QueryResult
from serve_app.timing import ms_since
from serve_app.verdict import judge, judge_code


class QueryPipeline:
    """The service's query path in one process: ``ExtractionService`` for extraction, the same ``answer``."""

    def __init__(self, extraction: ExtractionService, repository: BranchRepository):
        self.extraction = extraction
        self.repository = repository

    @property
    def extractor(self) -> RulesExtractor:
        assert self.extraction.extractor is not None
        return self.extraction.extractor

    async def run(self, request: QueryRequest) -> QueryResult:
        started = time.perf_counter()
        normalized = normalize(request.query)
        timings = {"normalize": ms_since(started)}
        result = await answer(self.extraction.extract_entities, self.repository, request, normalized, timings)
        result.timings_ms["total"] = ms_since(started)
        return result


ExtractFn = Callable[[str, str | None], Awaitable[ExtractionOutcome]]
#: Candidates judged per query; more than ``top_k`` so that rivals of the best one are seen.
CANDIDATES = 20


async def answer(
    extract_entities: ExtractFn,
    repository: BranchRepository,
    request: QueryRequest,
    normalized: str,
    timings: dict,
    adapter: str | None = None,
) -> QueryResult:
    """Extract (however ``extract_entities`` does it: in-process, or a deployment handle), retrieve, judge.

    The one query path: the offline pipeline and the service's ingress both end here. ``adapter`` is the
    one to ask (default: the request's ``model``, by name; the service passes its resolved ``name@revision``).
    A query that is or carries a 12-digit code is answered by the code (checked, then looked up), the text
    only confirming it.
    """
    mark = time.perf_counter()
    code = find_code(request.query)
    if normalized and not (code is not None and code.whole_query):  # a bare code names no branch words
        outcome = await extract_entities(normalized, adapter or request.model)
    else:
        outcome = ExtractionOutcome(entities=Entities(), source="rules", confidence=0.0)
    timings["extract"] = ms_since(mark)  # with the hop to the extraction deployment, where there is one
    timings |= outcome.timings_ms  # the work inside it
    mark = time.perf_counter()
    if code is not None:
        record = await repository.by_code(code.code) if code.valid else None
        judgement = judge_code(code, record, outcome.entities)
    else:
        retrieval = await repository.search(outcome.entities, normalized, CANDIDATES) if normalized else Retrieval([])
        judgement = judge(outcome.entities, retrieval, request.top_k, outcome.other_bank)
    timings["retrieve"] = ms_since(mark)
    return QueryResult(
        query=request.query,
        normalized=normalized,
        entities=outcome.entities,
        verdict=judgement.verdict,
        reason=judgement.reason,
        matches=judgement.matches,
        source=outcome.source,
        model=outcome.model,
        entities_source=outcome.entities_source,
        model_overruled=outcome.model_overruled,
        model_error=outcome.model_error,
        timings_ms=timings,
    )


async def build_pipeline(pool: asyncpg.Pool, read_with_model: ModelReader | None = None) -> QueryPipeline:
    """A pipeline over the directory in ``pool``'s database; ``read_with_model`` asks a model (if any)."""
    extraction = ExtractionService(pool, ExtractorTunables(), read_with_model)
    return QueryPipeline(await extraction.start(), BranchRepository(pool))
