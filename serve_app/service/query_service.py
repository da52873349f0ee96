"""The query flow behind ``POST /api/v1/query``: rate limit → cache → extract → retrieve → log.

Extraction is injected (an ``ExtractionService`` in this process, or the extraction deployment's
handle), so this runs and is tested without Ray. A requested adapter is resolved to its current
revision (``name@revision``), which the result cache keys on and the model replicas load. Failures are
domain errors (``serve_app.errors``); Redis trouble is never an error (see the cache and limiter).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from pydantic import ValidationError

from serve_app.answer_inputs import read_inputs
from serve_app.concurrency import map_bounded
from serve_app.config import IngressTunables
from serve_app.directory.codes import is_code_shaped, is_valid_code
from serve_app.directory.loader import read_data_version
from serve_app.errors import InvalidCode, InvalidRequest, RateLimited, UnknownAdapter, UnknownCode, unavailable
from serve_app.extraction.service import ExtractEntities
from serve_app.models.adapters import AdapterRegistry
from serve_app.pipeline import answer
from serve_app.retrieval import BranchRepository
from serve_app.schemas import (
    BatchItem,
    BranchRecordOut,
    QueryRequest,
    QueryResult,
    validation_message,
)
from serve_app.service.database import DATABASE_ERRORS, DATABASE_TIMEOUTS, DIRECTORY, database_errors
from serve_app.service.errors import render
from serve_app.service.query_log import QueryLog
from serve_app.service.rate_limit import RateLimiter
from serve_app.service.result_cache import ResultCache
from serve_app.service.tenants import Caller
from serve_app.timing import ms_since

log = logging.getLogger(__name__)
_ADAPTER_NAMES_TTL_S = 5.0
#: A batch takes one rate-limit token per this many lines.
LINES_PER_TOKEN = 100
#: Lines of one batch answered at the same time.
BATCH_CONCURRENCY = 16


class QueryService:
    def __init__(
        self,
        extract_entities: ExtractEntities,
        repository: BranchRepository,
        result_cache: ResultCache,
        rate_limiter: RateLimiter,
        query_log: QueryLog,
        registry: AdapterRegistry,
        on_result: Callable[[QueryResult, bool], None] | None = None,
    ):
        self.extract_entities = extract_entities
        self.repository = repository
        self.result_cache = result_cache
        self.rate_limiter = rate_limiter
        self.query_log = query_log
        self.registry = registry
        self.on_result = on_result  # observer (metrics): (result, served from cache)
        self.data_version = 0
        self._adapter_refs: tuple[float, dict[str, str]] = (0.0, {})

    def reconfigure(self, tunables: IngressTunables) -> None:
        """Apply live tunables (already validated) to the parts that use them."""
        self.rate_limiter.rate_per_s = tunables.rate_limit_per_s
        self.rate_limiter.burst = tunables.rate_limit_burst
        self.result_cache.ttl_s = tunables.result_cache_ttl_s
        self.result_cache.local_size = tunables.local_cache_size
        self.query_log.batch_size = tunables.query_log_batch
        self.query_log.interval_s = tunables.query_log_interval_s

    def stats(self) -> dict:
        log = self.query_log
        return {
            "result_cache": vars(self.result_cache.stats),
            "rate_limit": vars(self.rate_limiter.stats),
            "query_log": {
                "written": log.written,
                "pending": log.pending,
                "dropped": log.dropped,
                "rejected": log.rejected,
                "failures": log.failures,
            },
            "data_version": self.data_version,
        }

    async def refresh_data_version(self) -> int:
        async with self.repository.pool.acquire() as conn:
            self.data_version = await read_data_version(conn)
        return self.data_version

    async def query(self, request: QueryRequest, caller: Caller) -> QueryResult:
        """``POST /api/v1/query``: rate limit (the caller's bucket), the caller's adapters, answer, log."""
        started = time.perf_counter()
        caller.check_adapter(request.model)
        await self.take_tokens(caller, 1)
        timings = {"rate_limit": ms_since(started)}
        result = await self.answer(request, timings=timings, started=started)
        self._log(result, caller)
        return result

    async def batch(self, texts: list[str], model: str | None, top_k: int, caller: Caller) -> list[BatchItem]:
        """``POST /api/v1/query/batch``: every line answered (``concurrency`` at a time), in order; a line
        the service refuses is an error in its place. One rate-limit token per ``LINES_PER_TOKEN`` lines."""
        caller.check_adapter(model)
        await self.take_tokens(caller, math.ceil(len(texts) / LINES_PER_TOKEN))
        if model is not None:
            with database_errors():
                await self.adapter_ref(model)  # an unknown adapter fails the batch, not each line

        async def one(text: str) -> BatchItem:
            try:
                request = QueryRequest(query=text, model=model, top_k=top_k)
            except ValidationError as exc:
                return BatchItem(error=render(InvalidRequest(validation_message(exc)))[1]["error"])
            result = await self.answer(request)
            self._log(result, caller)
            return BatchItem(result=result)

        # A dependency that fails fails the batch with that error, as it would fail a query.
        return await map_bounded(one, texts, BATCH_CONCURRENCY)

    async def answer(
        self,
        request: QueryRequest,
        adapter: str | None = None,
        timings: dict[str, float] | None = None,
        started: float | None = None,
    ) -> QueryResult:
        """The answer to one valid request, from the cache or computed (cache → extract → retrieve → judge).
        ``adapter`` names the adapter to extract with when the request does not (bulk jobs)."""
        started = time.perf_counter() if started is None else started
        timings = {} if timings is None else timings
        with database_errors():
            name = request.model or adapter
            ref = None if name is None else await self.adapter_ref(name)
            inputs = read_inputs(request, ref, self.data_version)
            result, cached = await self.result_cache.get_or_compute(
                self.result_cache.key(inputs),
                lambda: answer(self.extract_entities, self.repository, inputs, request.query, timings),
                timings,
            )
        total_ms = ms_since(started)
        if cached:
            result = result.model_copy(
                update={"query": request.query, "source": "cache", "timings_ms": timings | {"total": total_ms}}
            )
        else:  # a caller that joined another's flight has only its own rate limit in ``timings``
            result = result.model_copy(update={"timings_ms": result.timings_ms | timings | {"total": total_ms}})
        if self.on_result is not None:
            self.on_result(result, cached)
        return result

    async def take_tokens(self, caller: Caller, cost: int) -> None:
        wait = await self.rate_limiter.check(caller.rate_key, caller.rate_per_s, cost)
        if wait is not None:
            raise RateLimited("too many requests; slow down", retry_after_s=max(1, math.ceil(wait)))

    def _log(self, result: QueryResult, caller: Caller) -> None:
        self.query_log.record(
            query=result.query,
            normalized=result.normalized,
            source=result.source,
            model=result.model,
            top_code=result.matches[0].code if result.matches else None,
            matches=len(result.matches),
            latency_ms=result.timings_ms.get("total", 0.0),
            client=caller.rate_key,
            verdict=result.verdict,
            reason=result.reason,
        )

    async def adapter_ref(self, name: str) -> str:
        """``name@revision`` of a registered adapter (the registry is read at most every few seconds);
        ``UnknownAdapter`` for a name that is not registered."""
        fetched_at, refs = self._adapter_refs
        if name not in refs or time.monotonic() - fetched_at >= _ADAPTER_NAMES_TTL_S:
            refs = {adapter.name: adapter.ref for adapter in await self.registry.list()}
            self._adapter_refs = (time.monotonic(), refs)
        if name not in refs:
            raise UnknownAdapter(f"no adapter named {name!r} is registered")
        return refs[name]

    async def branch(self, code: str) -> BranchRecordOut:
        """``GET /api/v1/branches/{code}``: the record, 422 for a malformed code, 404 for an unknown one."""
        if not is_code_shaped(code):
            raise InvalidCode("a CNAPS code is 12 digits")
        if not is_valid_code(code):
            raise InvalidCode(f"{code} fails its ISO 7064 MOD 11,10 check digit")
        with database_errors():
            record = await self.repository.by_code(code)
        if record is None:
            raise UnknownCode(f"no branch with code {code} is in the directory")
        return BranchRecordOut.model_validate(record)

    async def check_database(self, timeout_s: float = 2.0) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self.repository.pool.fetchval("SELECT 1")
        except (*DATABASE_TIMEOUTS, *DATABASE_ERRORS) as exc:
            raise unavailable(DIRECTORY) from exc
