"""The query flow behind ``POST /api/v1/query``: rate limit → cache → extract → retrieve → log.

Extraction is injected (a local extractor without Ray, a deployment handle under Serve), so this runs
and is tested without Ray. Dependency failures become ``ApiError``s here: PostgreSQL trouble is a 503
with a message, an unknown adapter a 404; Redis trouble is never an error (see the cache and limiter).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import asyncpg

from serve_app.directory.codes import is_code_shaped, is_valid_code
from serve_app.directory.loader import read_data_version
from serve_app.models.adapters import AdapterRegistry
from serve_app.normalize import normalize
from serve_app.pipeline import ExtractFn, answer
from serve_app.retrieval import BranchRepository
from serve_app.schemas import BranchRecordOut, QueryRequest, QueryResult
from serve_app.service.errors import ApiError, unavailable
from serve_app.service.query_log import QueryLog
from serve_app.service.rate_limit import RateLimiter
from serve_app.service.result_cache import ResultCache

log = logging.getLogger(__name__)

#: The database did not answer in time: its statement timeout fired, or no pooled connection came free.
DATABASE_TIMEOUTS = (TimeoutError, asyncpg.QueryCanceledError)
#: What counts as "the database is down" (connection refused/reset, shutdown, any server error).
#: ``InternalClientError`` is asyncpg finding a connection mid-operation when the pool resets it after
#: the server went away under a query; the pool has already terminated that connection.
DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
DIRECTORY = "the branch directory (PostgreSQL)"
_ADAPTER_NAMES_TTL_S = 5.0


def database_timeout(exc: BaseException, what: str = DIRECTORY) -> ApiError:
    """The 504 for a lookup that ran out of time: its statement was cancelled, or no connection came free."""
    if isinstance(exc, asyncpg.QueryCanceledError):
        reason = f"{what} did not answer within its statement timeout"
    else:
        reason = f"no connection to {what} came free in time"
    return ApiError(504, "timeout", f"{reason}; retry shortly", {"Retry-After": "1"})


@contextmanager
def database_errors(what: str = DIRECTORY) -> Iterator[None]:
    """Turn database trouble inside the block into the client's answer: a 504 ``timeout`` when it did not
    answer in time, a 503 ``unavailable`` naming ``what`` when it failed. Anything else passes through."""
    try:
        yield
    except DATABASE_TIMEOUTS as exc:
        log.warning("database timeout (%s): %r", what, exc)
        raise database_timeout(exc, what) from exc
    except DATABASE_ERRORS as exc:
        log.warning("database error (%s): %r", what, exc)
        raise unavailable(what) from exc


class QueryService:
    def __init__(
        self,
        extract: ExtractFn,
        repository: BranchRepository,
        result_cache: ResultCache,
        rate_limiter: RateLimiter,
        query_log: QueryLog,
        registry: AdapterRegistry,
        on_result: Callable[[QueryResult, bool], None] | None = None,
    ):
        self.extract = extract
        self.repository = repository
        self.result_cache = result_cache
        self.rate_limiter = rate_limiter
        self.query_log = query_log
        self.registry = registry
        self.on_result = on_result  # observer (metrics): (result, served from cache)
        self.data_version = 0
        self._adapter_names: tuple[float, set[str]] = (0.0, set())

    async def refresh_data_version(self) -> int:
        async with self.repository.pool.acquire() as conn:
            self.data_version = await read_data_version(conn)
        return self.data_version

    async def query(self, request: QueryRequest, client: str) -> QueryResult:
        started = time.perf_counter()
        wait = await self.rate_limiter.check(client)
        if wait is not None:
            raise ApiError(429, "rate_limited", "too many requests; slow down", {"Retry-After": str(int(wait))})
        normalized = normalize(request.query)
        with database_errors():
            if request.model is not None:
                await self._require_adapter(request.model)
            key = self.result_cache.key(normalized, request.model, request.top_k, self.data_version)
            result, cached = await self.result_cache.get_or_compute(
                key, lambda: answer(self.extract, self.repository, request, normalized, {})
            )
        total_ms = round((time.perf_counter() - started) * 1000, 3)
        if cached:
            result = result.model_copy(
                update={"query": request.query, "source": "cache", "timings_ms": {"total": total_ms}}
            )
        else:
            result = result.model_copy(update={"timings_ms": result.timings_ms | {"total": total_ms}})
        if self.on_result is not None:
            self.on_result(result, cached)
        self.query_log.record(
            query=request.query,
            normalized=normalized,
            source=result.source,
            model=result.model,
            top_code=result.matches[0].code if result.matches else None,
            matches=len(result.matches),
            latency_ms=total_ms,
            client=client,
            verdict=result.verdict,
            reason=result.reason,
        )
        return result

    async def _require_adapter(self, name: str) -> None:
        fetched_at, names = self._adapter_names
        if name in names and time.monotonic() - fetched_at < _ADAPTER_NAMES_TTL_S:
            return
        names = {adapter.name for adapter in await self.registry.list()}
        self._adapter_names = (time.monotonic(), names)
        if name not in names:
            raise ApiError(404, "unknown_model", f"no adapter named {name!r} is registered")

    async def branch(self, code: str) -> BranchRecordOut:
        """``GET /api/v1/branches/{code}``: the record, 422 for a malformed code, 404 for an unknown one."""
        if not is_code_shaped(code):
            raise ApiError(422, "invalid_code", "a CNAPS code is 12 digits")
        if not is_valid_code(code):
            raise ApiError(422, "invalid_code", f"{code} fails its ISO 7064 MOD 11,10 check digit")
        with database_errors():
            record = await self.repository.by_code(code)
        if record is None:
            raise ApiError(404, "unknown_code", f"no branch with code {code} is in the directory")
        return BranchRecordOut.model_validate(record)

    async def check_database(self, timeout_s: float = 2.0) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self.repository.pool.fetchval("SELECT 1")
        except (*DATABASE_TIMEOUTS, *DATABASE_ERRORS) as exc:
            raise unavailable(DIRECTORY) from exc
