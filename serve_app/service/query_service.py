"""The query flow behind ``POST /api/v1/query``: adapter → cache → extract → retrieve → log.

Extraction is injected (an ``ExtractionService`` in this process, or the extraction deployment's
handle), so this runs and is tested without Ray. A requested adapter is resolved to its current
revision (``name@revision``), which the result cache keys on and the model replicas load. Failures are
domain errors (``serve_app.errors``); each dependency maps its own (the directory's in ``retrieval``, the
registry's here); Redis trouble is never an error (see the cache and limiter). Who may call, and what a
call costs in rate-limit tokens, is the HTTP layer's to decide (``api.handlers``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from serve_app.concurrency import map_bounded
from serve_app.config import IngressTunables
from serve_app.db.errors import ADAPTER_REGISTRY, DATABASE_ERRORS, database_errors
from serve_app.directory.codes import is_code_shaped, is_valid_code, pasted_code
from serve_app.directory.loader import read_directory_state
from serve_app.errors import AdapterInvalid, InvalidCode, RateLimited, RetiredCode, UnknownAdapter, UnknownCode
from serve_app.extraction.service import ExtractEntities
from serve_app.models.adapters import AdapterRegistry, parse_adapter_ref
from serve_app.query.inputs import read_inputs
from serve_app.query.pipeline import compute_answer
from serve_app.query.retrieval import BranchRepository
from serve_app.schemas import BranchRecordOut, Confirmation, QueryRequest, QueryResult
from serve_app.service.confirmations import ConfirmationStore
from serve_app.service.query_log import QueryLog
from serve_app.service.rate_limit import RateLimiter
from serve_app.service.result_cache import ResultCache
from serve_app.service.tenants import Caller
from serve_app.timing import ms_since

log = logging.getLogger(__name__)
_ADAPTER_NAMES_TTL_S = 5.0
#: How long an answer waits for the caller's tenant's confirmation of its text before going on without it.
CONFIRMATION_TIMEOUT_S = 0.25
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
        confirmations: ConfirmationStore | None = None,
    ):
        """``confirmations``: the tenants' decisions on texts (None: answers never read them)."""
        self.extract_entities = extract_entities
        self.repository = repository
        self.result_cache = result_cache
        self.rate_limiter = rate_limiter
        self.query_log = query_log
        self.registry = registry
        self.on_result = on_result  # observer (metrics): (result, served from cache)
        self.confirmations = confirmations
        self.confirmations_unread = 0  # lookups that failed or ran out of time (answered without them)
        self.data_version = 0
        self.directory_as_of: date | None = None
        self._refreshing = asyncio.Lock()
        self._adapter_refs: tuple[float, dict[str, str]] = (0.0, {})

    def reconfigure(self, tunables: IngressTunables) -> None:
        """Apply live tunables (already validated) to the parts that use them."""
        self.rate_limiter.rate_per_s = tunables.rate_limit_per_s
        self.rate_limiter.burst = tunables.rate_limit_burst
        self.result_cache.ttl_s = tunables.result_cache_ttl_s
        self.result_cache.local_size = tunables.local_cache_size
        self.query_log.batch_size = tunables.query_log_batch
        self.query_log.interval_s = tunables.query_log_interval_s

    def stats(self) -> dict[str, Any]:
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
            "directory_as_of": str(self.directory_as_of),
            "confirmations_unread": self.confirmations_unread,
        }

    async def refresh_for_chunk(self) -> None:
        """Before a bulk job's chunk: the directory's version, and the registry read afresh (a job's pinned
        adapter is checked against it: a re-registration is seen by the next chunk, not 5 s later)."""
        self._adapter_refs = (0.0, {})
        await self.refresh_data_version()

    async def refresh_data_version(self) -> int:
        """Read the directory's data version and as-of date (the ingress does whenever a load is announced,
        and every few seconds; failures are the caller's)."""
        async with self._refreshing, self.repository.pool.acquire() as conn:  # one read at a time: the last wins
            self.data_version, self.directory_as_of = await read_directory_state(conn)
        return self.data_version

    async def query(
        self, request: QueryRequest, caller: Caller, timings: dict[str, float], started: float
    ) -> QueryResult:
        """``POST /api/v1/query`` once the caller is admitted (``api.handlers`` checks and charges it): the
        answer, logged. ``timings`` and ``started``: what the request has spent so far, and since when."""
        result = await self.answer(request, tenant=caller.tenant, timings=timings, started=started)
        self._log(result, caller)
        return result

    async def batch(self, requests: list[QueryRequest], adapter: str | None, caller: Caller) -> list[QueryResult]:
        """``POST /api/v1/query/batch``: every request answered (``BATCH_CONCURRENCY`` at a time), in order,
        with ``adapter``. An unknown adapter, or a dependency that fails, fails the batch."""
        if adapter is not None:
            await self.adapter_ref(adapter)

        async def one(request: QueryRequest) -> QueryResult:
            result = await self.answer(request, tenant=caller.tenant)
            self._log(result, caller)
            return result

        return await map_bounded(one, requests, BATCH_CONCURRENCY)

    async def answer(
        self,
        request: QueryRequest,
        adapter: str | None = None,
        tenant: str | None = None,
        timings: dict[str, float] | None = None,
        started: float | None = None,
    ) -> QueryResult:
        """The answer to one valid request, from the cache or computed (cache → extract → retrieve → judge).
        ``adapter`` names the adapter to extract with when the request does not (bulk jobs, batches);
        ``tenant``: whose decisions on texts apply (None: nobody's)."""
        started = time.perf_counter() if started is None else started
        timings = {} if timings is None else timings
        name = request.model or adapter  # the one place that decides: the request's adapter wins a job's
        ref = None if name is None else await self.adapter_ref(name)
        inputs = read_inputs(request, ref, self.data_version, self.directory_as_of)
        if tenant is not None and self.confirmations is not None and inputs.text_key:
            inputs = inputs.model_copy(update={"confirmation": await self._confirmation(tenant, inputs.text_key)})
        result, cached = await self.result_cache.get_or_compute(
            self.result_cache.key(inputs),
            lambda: compute_answer(self.extract_entities, self.repository, inputs, request.query, timings),
            timings,
        )
        total_ms = ms_since(started)
        if cached:
            source = "confirmed" if result.source == "confirmed" else "cache"  # a person's decision stays one
            result = result.model_copy(
                update={"query": request.query, "source": source, "timings_ms": timings | {"total": total_ms}}
            )
        else:  # a caller that joined another's flight has only its own rate limit in ``timings``
            result = result.model_copy(update={"timings_ms": result.timings_ms | timings | {"total": total_ms}})
        if self.on_result is not None:
            self.on_result(result, cached)
        return result

    async def _confirmation(self, tenant: str, text_key: str) -> Confirmation | None:
        """The tenant's decision on this text, read within ``CONFIRMATION_TIMEOUT_S`` and never an error: when
        PostgreSQL is away or slow the text is answered as any text is (cached answers go on being served, as
        they did before decisions existed). A decision is made on a row that was not ``match``, so missing
        one never makes a payment a person did not choose; it is counted (``stats``) and logged."""
        assert self.confirmations is not None
        try:
            async with asyncio.timeout(CONFIRMATION_TIMEOUT_S):
                return await self.confirmations.lookup(tenant, text_key)
        except (TimeoutError, *DATABASE_ERRORS) as exc:
            self.confirmations_unread += 1
            log.warning("a tenant's confirmations could not be read (%s): answered without them", type(exc).__name__)
            return None

    async def take_tokens(self, caller: Caller, cost: int) -> None:
        """Charge ``cost`` tokens to the caller's bucket, or ``RateLimited``. Called by the HTTP layer only
        (``api.handlers``), the one place that decides what a request costs."""
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

    async def adapter_ref(self, adapter: str) -> str:
        """``name@revision`` of a registered adapter (the registry is read at most every few seconds);
        ``UnknownAdapter`` for a name that is not registered. ``adapter`` may be a ref pinned earlier (a
        job's): ``AdapterInvalid`` when the name has been registered again since, so that one result file
        never mixes two revisions' answers."""
        name, pinned = parse_adapter_ref(adapter)
        ref = await self._current_ref(name)
        if pinned is not None and ref != adapter:
            raise AdapterInvalid(
                f"adapter {name!r} was registered again (now {ref}) after this job pinned {adapter}: "
                "submit the file again to answer it with the new weights"
            )
        return ref

    async def _current_ref(self, name: str) -> str:
        fetched_at, refs = self._adapter_refs
        if name not in refs or time.monotonic() - fetched_at >= _ADAPTER_NAMES_TTL_S:
            with database_errors(ADAPTER_REGISTRY):
                adapters = await self.registry.list()
            refs = {adapter.name: adapter.ref for adapter in adapters}
            self._adapter_refs = (time.monotonic(), refs)
        if name not in refs:
            raise UnknownAdapter.named(name)
        return refs[name]

    async def branch(self, code: str) -> BranchRecordOut:
        """``GET /api/v1/branches/{code}``: the record, 422 for a malformed code, 404 for an unknown one, 410
        for a retired one (with its record)."""
        code = pasted_code(code)
        if not is_code_shaped(code):
            raise InvalidCode("a CNAPS code is 12 digits")
        if not is_valid_code(code):
            raise InvalidCode(f"{code} fails its ISO 7064 MOD 11,10 check digit")
        record = await self.repository.by_code(code)
        if record is None:
            raise UnknownCode(f"no branch with code {code} is in the directory")
        out = BranchRecordOut.model_validate(record)
        if record.retired_on is not None:
            raise RetiredCode(
                f"{code} was retired from the directory as of {record.retired_on}: do not pay to it",
                details={"branch": out.model_dump(mode="json")},
            )
        return out

    async def check_database(self, timeout_s: float = 2.0) -> None:
        """Readiness: the directory answers within ``timeout_s`` (504 past it, 503 when it is down, as
        everywhere else)."""
        with database_errors():
            async with asyncio.timeout(timeout_s):
                await self.repository.pool.fetchval("SELECT 1")
