"""The query path — normalize → extract → retrieve → judge — and the pipeline that runs it without Ray.

The CLI runs ``QueryPipeline`` directly; the Serve deployments run the same ``compute_answer`` and the same
``ExtractionService``, split across replicas. Nothing here raises for odd input: text that normalizes
to nothing, or matches nothing, is a ``none`` verdict.
"""

from __future__ import annotations

import time

import asyncpg

from serve_app.config import ExtractorTunables
from serve_app.directory.loader import read_directory_state
from serve_app.extraction.rules import RulesExtractor
from serve_app.extraction.service import ExtractEntities, ExtractionService, ModelReader
from serve_app.query.candidates import Candidate, Retrieval
from serve_app.query.inputs import AnswerInputs, read_inputs
from serve_app.query.place_words import outside_bank
from serve_app.query.retrieval import BranchRepository
from serve_app.query.verdict import Judgement, judge, judge_code
from serve_app.schemas import (
    Branch,
    Confirmation,
    Entities,
    Evidence,
    ExtractionOutcome,
    Match,
    NotUsedBecause,
    QueryRequest,
    QueryResult,
)
from serve_app.timing import ms_since


class QueryPipeline:
    """The service's query path in one process: ``ExtractionService`` for extraction, the same ``compute_answer``."""

    def __init__(self, extraction: ExtractionService, repository: BranchRepository):
        self.extraction = extraction
        self.repository = repository

    @property
    def extractor(self) -> RulesExtractor:
        assert self.extraction.extractor is not None
        return self.extraction.extractor

    async def run(self, request: QueryRequest) -> QueryResult:
        started = time.perf_counter()
        async with self.repository.pool.acquire() as conn:
            data_version, as_of = await read_directory_state(conn)
        inputs = read_inputs(request, request.model, data_version, as_of)
        timings = {"normalize": ms_since(started)}
        result = await compute_answer(self.extraction.extract_entities, self.repository, inputs, request.query, timings)
        result.timings_ms["total"] = ms_since(started)
        return result


#: Candidates judged per query; more than ``top_k`` so that rivals of the best one are seen.
CANDIDATES = 20


async def compute_answer(
    extract_entities: ExtractEntities,
    repository: BranchRepository,
    inputs: AnswerInputs,
    query: str,
    timings: dict[str, float],
) -> QueryResult:
    """Extract (however ``extract_entities`` does it: in-process, or a deployment handle), retrieve, judge.

    The one query path: the offline pipeline and the service's ingress both end here. The answer is a
    function of ``inputs`` alone (the result cache keys on them); ``query`` is only echoed back.

    A query that is or carries a 12-digit code is answered by the code (checked, then looked up), the
    words beside it checked against it: words that name another branch, place or bank make it a conflict
    for a person to resolve, with both branches shown. When the branch meant is retired, the answer lists
    its possible successors.

    A text the caller's tenant has decided (``inputs.confirmation``) is answered by the decision while its
    branch is in the directory as decided; otherwise it is answered as any text is, and the answer says why
    the decision was not used.
    """
    if inputs.confirmation is not None:
        confirmed, confirmation = await _confirmed(repository, inputs, inputs.confirmation, query, timings)
        if confirmed is not None:
            return confirmed
        result = await _computed(extract_entities, repository, inputs, query, timings)
        return result.model_copy(update={"confirmation": confirmation})
    return await _computed(extract_entities, repository, inputs, query, timings)


async def _confirmed(
    repository: BranchRepository,
    inputs: AnswerInputs,
    confirmation: Confirmation,
    query: str,
    timings: dict[str, float],
) -> tuple[QueryResult | None, Confirmation]:
    """The answer a person decided (``match``/``confirmed``, or ``none``/``confirmed_none``), or None with
    the decision marked as not used, when its branch has since been retired, renamed or moved."""
    mark = time.perf_counter()
    matches: list[Match] = []
    if confirmation.code is not None:
        record = await repository.by_code(confirmation.code)
        stale = _stale(confirmation, record)
        if stale is not None or record is None:
            return None, confirmation.model_copy(update={"used": False, "not_used_because": stale})
        unstated = Evidence(bank="unstated", city="unstated", district="unstated", branch="unstated")
        matches = [Match(**Branch.model_validate(record).model_dump(), confidence=1.0, evidence=unstated, score=1.0)]
    timings["retrieve"] = ms_since(mark)
    answer = QueryResult(
        query=query,
        normalized=inputs.normalized,
        entities=Entities(),
        verdict="match" if matches else "none",
        reason="confirmed" if matches else "confirmed_none",
        matches=matches,
        source="confirmed",
        data_version=inputs.data_version,
        directory_as_of=inputs.directory_as_of,
        confirmation=confirmation,
        timings_ms=timings,
    )
    return answer, confirmation


def _stale(confirmation: Confirmation, record: Candidate | None) -> NotUsedBecause | None:
    """Why a decided code can no longer be paid to (None: it can): ``record`` is its directory record today."""
    if record is None:
        return "not_in_directory"
    if record.retired_on is not None:
        return "retired"
    if (record.name, record.city) != (confirmation.name, confirmation.city):
        return "changed"
    return None


async def _computed(
    extract_entities: ExtractEntities,
    repository: BranchRepository,
    inputs: AnswerInputs,
    query: str,
    timings: dict[str, float],
) -> QueryResult:
    mark = time.perf_counter()
    normalized, code = inputs.normalized, inputs.code
    if normalized and not (code is not None and code.whole_query):  # a bare code names no branch words
        outcome = await extract_entities(normalized, inputs.adapter, inputs.data_version)
    else:
        outcome = ExtractionOutcome(entities=Entities(), source="rules", confidence=0.0)
    timings["extract"] = ms_since(mark)  # with the hop to the extraction deployment, where there is one
    timings |= outcome.timings_ms  # the work inside it
    mark = time.perf_counter()
    written = outside_bank(normalized, outcome.bank_written)
    if code is not None:
        record = await repository.by_code(code.code) if code.valid else None
        words: Judgement | None = None
        if record is not None and not code.whole_query and normalized:
            retrieval = await repository.search(outcome.entities, normalized, CANDIDATES)
            words = judge(outcome.entities, retrieval, inputs.top_k, outcome.other_bank, written=written)
        judgement = judge_code(code, record, outcome.entities, words, inputs.top_k, written=written)
    else:
        retrieval = await repository.search(outcome.entities, normalized, CANDIDATES) if normalized else Retrieval([])
        judgement = judge(outcome.entities, retrieval, inputs.top_k, outcome.other_bank, written=written)
    successors = []
    if judgement.retired is not None:
        successors = [Branch.model_validate(c) for c in await repository.successors(judgement.retired)]
    timings["retrieve"] = ms_since(mark)
    return QueryResult(
        query=query,
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
        successors=successors,
        data_version=inputs.data_version,
        directory_as_of=inputs.directory_as_of,
        timings_ms=timings,
    )


async def build_pipeline(pool: asyncpg.Pool, read_with_model: ModelReader | None = None) -> QueryPipeline:
    """A pipeline over the directory in ``pool``'s database; ``read_with_model`` asks a model (if any)."""
    extraction = ExtractionService(pool, ExtractorTunables(), read_with_model)
    return QueryPipeline(await extraction.start(), BranchRepository(pool))
