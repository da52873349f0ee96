"""Service pieces without Ray: result cache, rate limiter, query log, admission and the HTTP layer, on
real PostgreSQL and Valkey. The extraction step is a fake, named as such."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from serve_app.api.admission import Admission
from serve_app.api.app import build_http_app
from serve_app.api.errors import render
from serve_app.api.parts import Api
from serve_app.db.errors import database_errors
from serve_app.db.pool import create_pool
from serve_app.db.redis_client import create_redis
from serve_app.errors import ServiceError
from serve_app.extraction.model_use import rules_outcome
from serve_app.extraction.rules import RulesExtractor
from serve_app.extraction.vocabulary import Vocabulary
from serve_app.models.adapters import AdapterRegistry
from serve_app.models.board import ModelBoard
from serve_app.ops.embedded import free_port
from serve_app.query.inputs import AnswerInputs, read_inputs
from serve_app.query.retrieval import BranchRepository
from serve_app.schemas import Confirmation, Entities, ExtractionOutcome, QueryRequest, QueryResult
from serve_app.service import rate_limit
from serve_app.service.admin import AdminService
from serve_app.service.query_log import QueryLog
from serve_app.service.query_service import QueryService
from serve_app.service.rate_limit import RateLimiter
from serve_app.service.result_cache import ResultCache
from serve_app.settings import Settings

SEED_CODE = "304659715925"


async def eventually(condition, timeout_s: float = 30) -> None:
    """Poll ``condition`` on the event loop until it holds (a generous bound: a test never waits on the clock)."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the conditions polled here have no event of their own
            await asyncio.sleep(0.005)


def inputs(text: str, adapter: str | None = None, top_k: int = 5, data_version: int = 1) -> AnswerInputs:
    return read_inputs(QueryRequest(query=text, top_k=top_k), adapter, data_version)


def confirmed(code: str | None, by: str = "张三") -> Confirmation:
    """A tenant's decision on a text, as ``AnswerInputs.confirmation`` carries it."""
    name = None if code is None else "华夏银行股份有限公司江油西山支行"
    return Confirmation(
        code=code, name=name, city=name and "绵阳市", decided_by=by, decided_at=datetime(2026, 12, 7, tzinfo=UTC)
    )


def _result(text: str) -> QueryResult:
    return QueryResult(
        query=text,
        normalized=text,
        entities=Entities(),
        verdict="none",
        reason="no_branch_fits",
        matches=[],
        source="rules",
        timings_ms={},
    )


class GatedCompute:
    """A result computation that waits for ``release`` and counts how often it ran."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.calls = 0

    async def __call__(self) -> QueryResult:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        return _result("华夏")


async def test_identical_concurrent_queries_are_computed_once(redis_client) -> None:
    cache = ResultCache(redis_client, ttl_s=60, local_size=10)
    compute = GatedCompute()
    key = cache.key(inputs("华夏"))
    await redis_client.delete(key)
    waiting = [asyncio.create_task(cache.get_or_compute(key, compute)) for _ in range(10)]
    await eventually(lambda: compute.started.is_set() and cache.stats.coalesced == 9)
    compute.release.set()
    results = await asyncio.gather(*waiting)
    assert compute.calls == 1 and cache.stats.coalesced == 9
    assert all(result.query == "华夏" for result, _ in results)
    cache.clear_local()
    _, cached = await cache.get_or_compute(key, compute)  # now from Redis
    assert cached and cache.stats.redis_hits == 1 and compute.calls == 1


class FakeSlowReads:
    """Fake of a Redis client whose reads return what Redis held when asked, ``delay_s`` later."""

    def __init__(self, redis, delay_s: float) -> None:
        self.redis = redis
        self.delay_s = delay_s
        self.reads = 0  # reads that have their value and are now delayed

    async def get(self, key: str):
        value = await self.redis.get(key)
        self.reads += 1
        await asyncio.sleep(self.delay_s)
        return value

    async def set(self, key: str, value: str, ex: int):
        return await self.redis.set(key, value, ex=ex)


async def test_a_caller_whose_lookup_straddles_the_computation_does_not_compute_again(redis_client) -> None:
    """A second caller that comes while the first computes (its own slow Redis read would end after the
    result is stored) joins the first's flight: no second lookup, no second computation."""
    reads = FakeSlowReads(redis_client, delay_s=0.2)
    cache = ResultCache(reads, ttl_s=60, local_size=10, prefix=f"t{free_port()}")  # type: ignore[arg-type]
    compute = GatedCompute()
    key = cache.key(inputs("华夏"))
    first = asyncio.create_task(cache.get_or_compute(key, compute))
    await compute.started.wait()
    second = asyncio.create_task(cache.get_or_compute(key, compute))
    await eventually(lambda: cache.stats.coalesced == 1)  # it joined the flight: no lookup of its own
    assert reads.reads == 1
    compute.release.set()
    assert [result.query for result, _ in await asyncio.gather(first, second)] == ["华夏", "华夏"]
    assert compute.calls == 1


async def test_cache_keys_change_with_every_input_of_the_answer(redis_client) -> None:
    cache = ResultCache(redis_client, ttl_s=60, local_size=10)
    keys = {
        cache.key(inputs("x")),
        cache.key(inputs("x", data_version=2)),
        cache.key(inputs("x", adapter="job_22@r1")),
        cache.key(inputs("x", adapter="job_22@r2")),
        cache.key(inputs("x", top_k=3)),
        cache.key(inputs(f"x（{SEED_CODE}）")),
        cache.key(inputs(f"x（{SEED_CODE[:-1]}0）")),
        # A tenant's decision on the text is an input; tenants without one share the plain entry above.
        cache.key(inputs("x").model_copy(update={"confirmation": confirmed(SEED_CODE)})),
        cache.key(inputs("x").model_copy(update={"confirmation": confirmed(None)})),
        cache.key(inputs("x").model_copy(update={"confirmation": confirmed(SEED_CODE, "李四")})),
    }
    assert len(keys) == 10
    assert cache.key(inputs("华夏 银行")) == cache.key(inputs("華夏銀行"))  # the same normalized text, the same key


async def test_an_answer_whose_fallback_was_skipped_is_not_cached(redis_client) -> None:
    from serve_app.extraction.model_use import MODEL_SKIPPED

    cache = ResultCache(redis_client, 60, 100, prefix=f"t{free_port()}")
    calls = 0

    async def compute() -> QueryResult:
        nonlocal calls
        calls += 1
        return _result("华夏").model_copy(update={"model": "job_22", "model_error": MODEL_SKIPPED})

    for _ in range(2):
        result, cached = await cache.get_or_compute(cache.key(inputs("华夏")), compute)
        assert result.model_error == MODEL_SKIPPED and cached is False
    assert calls == 2


async def test_cache_without_redis_still_answers() -> None:
    dead = create_redis(f"redis://127.0.0.1:{free_port()}/0")
    cache = ResultCache(dead, ttl_s=60, local_size=0)
    result, cached = await cache.get_or_compute("k", lambda: asyncio.sleep(0, _result("y")))
    assert result.query == "y" and not cached
    assert cache.stats.redis_up is False and cache.stats.redis_errors >= 1
    await dead.aclose()


async def test_token_bucket_allows_the_burst_then_asks_to_wait(redis_client) -> None:
    limiter = RateLimiter(redis_client, rate_per_s=0.5, burst=3, prefix="test-rl")
    outcomes = [await limiter.check("client-a") for _ in range(5)]
    assert outcomes[:3] == [None, None, None]
    assert all(wait is not None and wait >= 1 for wait in outcomes[3:])
    assert await limiter.check("client-b") is None  # buckets are per client
    dead = create_redis(f"redis://127.0.0.1:{free_port()}/0")
    assert await RateLimiter(dead, 1, 1).check("anyone") is None  # fails open
    await dead.aclose()


async def test_a_pooled_connection_comes_back_without_the_last_users_transaction(sample_database_url) -> None:
    # The pool's reset sends no RESET ALL (serve_app.db.pool._keep_session); asyncpg still rolls back a
    # transaction its user left open, and with it any SET LOCAL.
    pool = await create_pool(sample_database_url, Settings(db_pool_min=1, db_pool_max=1))
    try:
        async with pool.acquire() as conn:
            configured = await conn.fetchval("SHOW statement_timeout")
            await conn.execute("BEGIN")
            await conn.execute("SET LOCAL statement_timeout = 1234")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SHOW statement_timeout") == configured != "1234ms"
            assert await conn.fetchval("SHOW pg_trgm.word_similarity_threshold") == "0.5"
    finally:
        await pool.close()


async def _bucket_tokens(redis_client, prefix: str) -> float:
    (key,) = [key async for key in redis_client.scan_iter(f"{prefix}:rl:*")]
    return float(await redis_client.hget(key, "tokens"))


async def test_a_busy_client_takes_its_tokens_a_lease_at_a_time(redis_client, monkeypatch) -> None:
    monkeypatch.setattr(rate_limit, "LEASE_TTL_S", 0.5)
    limiter = RateLimiter(redis_client, rate_per_s=0.001, burst=400, prefix="test-lease")  # leases of at most 20
    assert [await limiter.check("busy") for _ in range(32)] == [None] * 32
    # Leases of 1, 2, 4, 8 and 16 tokens, each spent within its time; the 32nd request took a lease of 20.
    assert limiter.stats.leases == 6 and limiter.stats.allowed == 32
    assert abs(await _bucket_tokens(redis_client, "test-lease") - (400 - 31 - 20)) < 0.01
    await asyncio.sleep(0.6)  # the 19 tokens left lapse unspent: the next lease is half the size
    assert await limiter.check("busy") is None
    assert abs(await _bucket_tokens(redis_client, "test-lease") - (400 - 31 - 20 - 10)) < 0.01


async def test_an_occasional_client_takes_one_token_per_request(redis_client, monkeypatch) -> None:
    monkeypatch.setattr(rate_limit, "LEASE_TTL_S", 0.05)
    limiter = RateLimiter(redis_client, rate_per_s=0.001, burst=400, prefix="test-occasional")
    for _ in range(3):
        assert await limiter.check("occasional") is None
        await asyncio.sleep(0.1)
    assert limiter.stats.leases == 3
    assert abs(await _bucket_tokens(redis_client, "test-occasional") - 397) < 0.01


async def test_leases_on_several_replicas_never_admit_more_than_the_bucket(redis_client) -> None:
    # Two replicas' limiters over one bucket of 40 (leases of at most 2), nearly no refill: at most 40
    # requests pass, and at most the two replicas' unspent leases (4 tokens) are lost to the client.
    replicas = [RateLimiter(redis_client, rate_per_s=0.001, burst=40, prefix="test-shared") for _ in range(2)]
    outcomes = [await replicas[i % 2].check("tenant") for i in range(80)]
    admitted = outcomes.count(None)
    assert 36 <= admitted <= 40, admitted
    assert all(wait is not None and wait >= 1 for wait in outcomes[-30:])


def _record(log: QueryLog, text: str) -> None:
    log.record(query=text, normalized=text, source="rules", model=None, top_code=None, matches=0, latency_ms=1.0,
               client="test")  # fmt: skip


async def test_query_log_flushes_on_size_and_close(sample_pool) -> None:
    await sample_pool.execute("TRUNCATE query_log")
    log = QueryLog(sample_pool, batch_size=3, interval_s=60)  # no flush on time within the test
    log.start()
    try:
        for i in range(3):
            _record(log, f"q{i}")
        await eventually(lambda: log.written == 3)  # a batch's worth wakes the flusher
        for i in range(3, 5):
            _record(log, f"q{i}")
        assert log.pending == 2  # below a batch: they wait for the interval, or for close
    finally:
        await log.close()  # the rest, as at a graceful shutdown
    assert await sample_pool.fetchval("SELECT count(*) FROM query_log") == 5
    assert log.pending == 0 and log.written == 5


async def test_query_log_counts_the_rows_it_drops_past_its_buffer(sample_pool) -> None:
    await sample_pool.execute("TRUNCATE query_log")
    log = QueryLog(sample_pool, batch_size=100, interval_s=60, max_buffer=5)
    for i in range(8):
        _record(log, f"q{i}")
    assert (log.pending, log.dropped) == (5, 3)  # the newest rows are the ones dropped
    await log.close()
    rows = await sample_pool.fetchval("SELECT array_agg(query ORDER BY id) FROM query_log")
    assert (rows, log.written, log.dropped) == ([f"q{i}" for i in range(5)], 5, 3)


async def test_query_log_drops_only_the_row_the_database_refuses(sample_pool) -> None:
    """A row PostgreSQL will not store (NUL in text) must not block the rows around it, now or later."""
    await sample_pool.execute("TRUNCATE query_log")
    log = QueryLog(sample_pool, batch_size=1000, interval_s=60)
    for text in ("first", "bad\x00row", "last"):
        _record(log, text)
    assert await log.flush() == 2
    assert (log.written, log.rejected, log.pending) == (2, 1, 0)
    assert await sample_pool.fetchval("SELECT array_agg(query ORDER BY id) FROM query_log") == ["first", "last"]


def admin_for(pool, redis_client) -> AdminService:
    """The real admin service of an application without model replicas."""
    return AdminService(AdapterRegistry(pool), ModelBoard(redis_client, prefix=f"t{free_port()}"), None, None)


async def fake_extract(pool):
    """Fake of the EntityExtractor deployment: rules extraction in this process, over ``pool``'s directory."""
    async with pool.acquire() as conn:
        extractor = RulesExtractor(await Vocabulary.from_database(conn))

    async def extract(normalized: str, model: str | None, data_version: int) -> ExtractionOutcome:
        return rules_outcome(extractor.extract(normalized))

    return extract


@pytest.fixture
async def http_client(sample_pool, redis_client):
    service = QueryService(
        extract_entities=await fake_extract(sample_pool),
        repository=BranchRepository(sample_pool),
        result_cache=ResultCache(redis_client, 60, 100, prefix=f"t{free_port()}"),
        rate_limiter=RateLimiter(redis_client, 1000, 1000, prefix=f"t{free_port()}"),
        query_log=QueryLog(sample_pool),
        registry=AdapterRegistry(sample_pool),
    )
    await service.refresh_data_version()
    app = build_http_app(Api(service, admin_for(sample_pool, redis_client), dict, SecretStr("s3cret")))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
        yield client
    await service.query_log.close()


async def test_http_query_then_cache(http_client: httpx.AsyncClient) -> None:
    ok = await http_client.post("/api/v1/query", json={"query": "华夏银行江油西山支行"})
    assert ok.status_code == 200 and ok.json()["matches"][0]["code"] == SEED_CODE
    again = await http_client.post("/api/v1/query", json={"query": "华夏银行江油西山支行"})
    assert again.json()["source"] == "cache"
    # Where the time went, stage by stage (the README's breakdown is read from these).
    stages = ok.json()["timings_ms"]
    assert set(stages) == {"rate_limit", "cache_lookup", "extract", "retrieve", "cache_write", "total"}
    assert stages["total"] >= stages["rate_limit"] + stages["extract"] + stages["retrieve"]
    assert set(again.json()["timings_ms"]) == {"rate_limit", "total"}  # a hit in this replica's LRU


async def test_http_answers_carry_a_verdict_and_branches_look_up_by_code(http_client: httpx.AsyncClient) -> None:
    answer = (await http_client.post("/api/v1/query", json={"query": "华夏银行江油西山支行"})).json()
    assert (answer["verdict"], answer["reason"]) == ("match", "unique_fit")
    assert answer["matches"][0]["evidence"]["branch"] == "exact" and 0 < answer["matches"][0]["confidence"] <= 1
    record = await http_client.get(f"/api/v1/branches/{SEED_CODE}")
    assert record.status_code == 200
    assert record.json() == {
        "code": SEED_CODE, "name": "华夏银行股份有限公司江油西山支行", "bank": "华夏银行", "bank_code": "304",
        "province": "四川省", "city": "绵阳市", "district": "江油市", "clearing_code": "304100040000",
        "retired_on": None,
    }  # fmt: skip
    for code, status, error in [("304659715926", 422, "invalid_code"), ("30465971592x", 422, "invalid_code"),
                                ("102100009998", 404, "unknown_code")]:  # fmt: skip
        response = await http_client.get(f"/api/v1/branches/{code}")
        assert (response.status_code, response.json()["error"]["code"]) == (status, error), code


#: Hostile or malformed bodies for POST /api/v1/query: (body, expected status, expected error code).
#: A ``str`` body is sent as raw bytes (UTF-8), anything else as JSON.
BAD_QUERY_BODIES = [
    pytest.param(b"\xff\xfe\x00{", 400, "invalid_json", id="invalid-utf8"),
    pytest.param('{"query": "华夏"', 400, "invalid_json", id="truncated-json"),
    pytest.param("[" * 5000 + "]" * 5000, 400, "invalid_json", id="nested-5000-deep"),
    pytest.param('{"query": "\\ud800"}', 422, "invalid_request", id="lone-surrogate-escape"),
    pytest.param("x" * 20_000, 413, "body_too_large", id="oversized-20kB"),
    pytest.param({"query": "华" * 10_000}, 413, "body_too_large", id="10k-cjk-chars-30kB"),
    pytest.param({"query": "x" * 10_000}, 422, "invalid_request", id="10k-ascii-chars"),
    pytest.param({"query": "x" * 513}, 422, "invalid_request", id="513-chars"),
    pytest.param("null", 422, "invalid_request", id="json-null"),
    pytest.param(["华夏银行"], 422, "invalid_request", id="json-array"),
    pytest.param('"华夏银行"', 422, "invalid_request", id="json-string"),
    pytest.param({}, 422, "invalid_request", id="no-query"),
    pytest.param({"query": 5}, 422, "invalid_request", id="query-number"),
    pytest.param({"query": None}, 422, "invalid_request", id="query-null"),
    pytest.param({"query": ["华夏"]}, 422, "invalid_request", id="query-list"),
    pytest.param({"query": ""}, 422, "invalid_request", id="query-empty"),
    pytest.param({"query": " \t\n\u3000 "}, 422, "invalid_request", id="query-whitespace"),
    pytest.param({"query": "华夏\x00银行"}, 422, "invalid_request", id="query-nul"),
    pytest.param({"query": "\x1b[31m华夏银行"}, 422, "invalid_request", id="query-ansi-escape"),
    pytest.param({"query": "华夏\x85银行"}, 422, "invalid_request", id="query-c1-control"),
    pytest.param({"query": "华夏", "top_k": 0}, 422, "invalid_request", id="top_k-zero"),
    pytest.param({"query": "华夏", "top_k": 1.5}, 422, "invalid_request", id="top_k-float"),
    pytest.param({"query": "华夏", "top_k": 10**40}, 422, "invalid_request", id="top_k-huge"),
    pytest.param({"query": "华夏", "top_k": "lots"}, 422, "invalid_request", id="top_k-string"),
    pytest.param({"query": "华夏", "extra": 1}, 422, "invalid_request", id="unknown-field"),
    pytest.param({"query": "华夏", "model": "../../etc/passwd"}, 422, "invalid_request", id="model-path-traversal"),
    pytest.param({"query": "华夏", "model": "x'; DROP TABLE adapters; --"}, 422, "invalid_request", id="model-sqli"),
    pytest.param({"query": "华夏", "model": "a" * 65}, 422, "invalid_request", id="model-too-long"),
    pytest.param({"query": "华夏", "model": 7}, 422, "invalid_request", id="model-number"),
    pytest.param({"query": "华夏", "model": "job_99"}, 404, "unknown_model", id="model-unregistered"),
    # Hostile but valid text is a query like any other: a normal answer, never an error.
    pytest.param({"query": "'; DROP TABLE branches; --"}, 200, None, id="query-sqli"),
    pytest.param({"query": "华夏银行' OR '1'='1"}, 200, None, id="query-sqli-or"),
    pytest.param({"query": "../../etc/passwd"}, 200, None, id="query-path-traversal"),
    pytest.param({"query": "%s%s%n {0} ${jndi:ldap://x}"}, 200, None, id="query-format-strings"),
    pytest.param({"query": "华夏银行\t江油\n西山支行"}, 200, None, id="query-tab-newline"),
    pytest.param({"query": "华夏\u200b银行\u202e江油🏦"}, 200, None, id="query-zero-width-rtl-emoji"),
    pytest.param({"query": "华" * 512}, 200, None, id="512-chars"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_QUERY_BODIES)
async def test_bad_input_is_a_clear_4xx_or_a_normal_answer(http_client, sample_pool, body, status, code) -> None:
    rows_before = await sample_pool.fetchval("SELECT count(*) FROM branches")
    raw = isinstance(body, str | bytes)
    response = await http_client.post("/api/v1/query", **({"content": body} if raw else {"json": body}))
    assert response.status_code == status, response.text
    payload = response.json()
    if code is None:
        QueryResult.model_validate(payload)
    else:
        assert payload["error"]["code"] == code and payload["error"]["message"]
        assert "Traceback" not in response.text
    assert await sample_pool.fetchval("SELECT count(*) FROM branches") == rows_before
    healthy = await http_client.post("/api/v1/query", json={"query": "华夏银行江油西山支行"})
    assert healthy.status_code == 200 and healthy.json()["matches"][0]["code"] == SEED_CODE


async def test_http_admin_auth_and_meta(http_client: httpx.AsyncClient, sample_pool) -> None:
    assert (await http_client.get("/api/v1/adapters")).status_code == 401
    near_misses = ("Bearer nope", "Bearer s3cre", "Bearer s3cret ", "bearer s3cret", "s3cret", "Bearer " + "x" * 8000)
    for supplied in near_misses:
        wrong = await http_client.get("/api/v1/adapters", headers={"authorization": supplied})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized", supplied
    traversal = await http_client.delete("/api/v1/adapters/..%2F..%2Fetc", headers={"authorization": "Bearer s3cret"})
    assert traversal.status_code == 404
    right = await http_client.get("/api/v1/adapters", headers={"authorization": "Bearer s3cret"})
    registered = [adapter.model_dump(mode="json") for adapter in await AdapterRegistry(sample_pool).list()]
    assert right.status_code == 200 and right.json() == registered  # other tests share this database
    assert (await http_client.get("/readyz")).json()["status"] == "ready"
    assert (await http_client.get("/nowhere")).json()["error"]["code"] == "not_found"
    assert (await http_client.get("/api/v1/query")).status_code == 405
    spec = (await http_client.get("/openapi.json")).json()
    assert "/api/v1/query" in spec["paths"] and "QueryRequest" in spec["components"]["schemas"]


@pytest.mark.slow
async def test_postgres_outage_is_a_503_and_recovery_is_automatic(tmp_path, redis_client) -> None:
    """Stop the database under the HTTP app: clear 503s, bounded in time; restart it: answers resume."""
    import time

    from serve_app.db.migrate import apply_migrations
    from serve_app.db.pool import connect_admin
    from serve_app.directory.loader import load_directory
    from serve_app.directory.records import demo_cnaps_path
    from serve_app.ops.embedded import EmbeddedPostgres
    from serve_app.settings import Settings

    server = EmbeddedPostgres(tmp_path / "pg", port=free_port())
    url = server.start()
    conn = await connect_admin(url)
    await apply_migrations(conn)
    await load_directory(conn, demo_cnaps_path())
    await conn.close()
    pool = await create_pool(url, Settings(db_statement_timeout_ms=1000, db_connect_timeout_s=1.0))
    service = QueryService(
        extract_entities=await fake_extract(pool),
        repository=BranchRepository(pool),
        result_cache=ResultCache(None, 60, 0),
        rate_limiter=RateLimiter(None, 1, 1),
        query_log=QueryLog(pool),
        registry=AdapterRegistry(pool),
    )
    app = build_http_app(Api(service, admin_for(pool, redis_client), dict, None))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
            assert (await client.post("/api/v1/query", json={"query": "华夏银行江油西山支行"})).status_code == 200
            server.stop()
            started = time.monotonic()
            down = await client.post("/api/v1/query", json={"query": "工行徐州经济开发区支行"})
            assert down.status_code == 503 and time.monotonic() - started < 30  # does not hang
            assert down.json()["error"]["code"] == "unavailable" and down.headers["retry-after"] == "1"
            assert (await client.get("/readyz")).status_code == 503
            server.start()
            deadline = time.monotonic() + 30
            while True:  # the pool replaces its broken connections by itself
                response = await client.post("/api/v1/query", json={"query": "中国工商银行北京新华支行"})
                if response.status_code == 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert response.status_code == 200, response.text
            assert (response.json()["verdict"], response.json()["matches"][0]["code"]) == ("match", "102100000021")
    finally:
        await service.query_log.close()
        await pool.close()
        server.stop()


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ConnectionRefusedError(111, "refused"), 503, "unavailable"),
        (asyncpg.AdminShutdownError("terminating connection due to administrator command"), 503, "unavailable"),
        (asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"), 503, "unavailable"),
        # What asyncpg's pool raises when it resets a connection the server dropped mid-query (seen in CI).
        (
            asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
            503,
            "unavailable",
        ),
        (asyncpg.QueryCanceledError("canceling statement due to statement timeout"), 504, "timeout"),
        (TimeoutError(), 504, "timeout"),
    ],
)
def test_database_errors_become_503_or_504(error, status, code) -> None:
    with pytest.raises(ServiceError) as raised, database_errors("the adapter registry (PostgreSQL)"):
        raise error
    answered, body, headers = render(raised.value)
    assert (answered, body["error"]["code"], headers) == (status, code, {"Retry-After": "1"})
    assert raised.value.__cause__ is error
    assert "the adapter registry (PostgreSQL)" in body["error"]["message"]


def test_database_errors_let_other_errors_through() -> None:
    with pytest.raises(KeyError), database_errors():
        raise KeyError("not a database problem")


async def test_adapter_registration_is_atomic_under_concurrency(sample_pool) -> None:
    """Ten concurrent registrations of one name: exactly one row and one success; the rest say why."""
    from pathlib import Path

    from serve_app.errors import AdapterExists
    from serve_app.models.engine import AdapterSpec

    registry = AdapterRegistry(sample_pool)
    name = f"race_{free_port()}"
    spec = AdapterSpec(name=name, path=Path("/unused"), base_model="demo-base", rank=8)
    outcomes = await asyncio.gather(*(registry.register(spec, name) for _ in range(10)), return_exceptions=True)
    try:
        assert sum(not isinstance(o, Exception) for o in outcomes) == 1
        failures = [o for o in outcomes if isinstance(o, Exception)]
        assert all(isinstance(o, AdapterExists) and "already registered" in str(o) for o in failures)
        assert await sample_pool.fetchval("SELECT count(*) FROM adapters WHERE name = $1", name) == 1
    finally:
        assert await registry.delete(name)


async def test_a_cancelled_first_caller_does_not_cancel_the_others(redis_client) -> None:
    cache = ResultCache(redis_client, ttl_s=60, local_size=10, prefix=f"t{free_port()}")
    compute = GatedCompute()
    key = cache.key(inputs("华夏"))
    first = asyncio.create_task(cache.get_or_compute(key, compute))
    await compute.started.wait()
    second = asyncio.create_task(cache.get_or_compute(key, compute))
    await eventually(lambda: cache.stats.coalesced == 1)
    first.cancel()  # the first caller's client went away
    compute.release.set()
    result, cached = await second
    assert (result.query, cached, compute.calls) == ("华夏", False, 1)
    assert first.cancelled()
    assert (await cache.get_or_compute(key, compute))[1] is True  # computed once, and cached


class FakePool:
    """Fake of an asyncpg pool (and its connection) for the query log: records each COPY's rows; ``down``
    refuses connections."""

    def __init__(self) -> None:
        self.down = True
        self.statements: list[int] = []

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakePool]:
        if self.down:
            raise ConnectionRefusedError(111, "refused")
        yield self

    async def copy_records_to_table(self, table: str, *, records: list, columns: tuple) -> None:
        self.statements.append(len(records))


async def test_query_log_has_one_flusher_and_drains_a_backlog_in_chunks() -> None:
    pool = FakePool()
    log = QueryLog(pool, batch_size=50, interval_s=0.05)  # type: ignore[arg-type]
    log.start()
    try:
        tasks_before = len(asyncio.all_tasks())
        for i in range(1_000):  # a long outage: twenty batches' worth
            _record(log, f"q{i}")
        assert len(asyncio.all_tasks()) == tasks_before  # record() never starts a task
        await eventually(lambda: log.failures >= 1)
        assert log.pending == 1_000 and log.written == 0
        pool.down = False
        await eventually(lambda: log.pending == 0)
        assert (log.written, log.pending) == (1_000, 0)
        assert pool.statements and max(pool.statements) <= 50 and sum(pool.statements) == 1_000
    finally:
        await log.close()


def admission_of(app) -> Admission:
    """The admission middleware inside a built Starlette app (built on its first request)."""
    layer = app.middleware_stack
    while not isinstance(layer, Admission):
        layer = layer.app
    return layer


async def test_admission_answers_past_its_bounds_with_json_503_and_keeps_probes_open(sample_pool, redis_client) -> None:
    release = asyncio.Event()
    inner = await fake_extract(sample_pool)

    at_work = 0

    async def slow_extract(normalized: str, model: str | None, data_version: int | None) -> ExtractionOutcome:
        nonlocal at_work
        at_work += 1
        await release.wait()
        return await inner(normalized, model, data_version)

    service = QueryService(
        extract_entities=slow_extract,
        repository=BranchRepository(sample_pool),
        result_cache=ResultCache(None, 60, 0),
        rate_limiter=RateLimiter(None, 1000, 1000),
        query_log=QueryLog(sample_pool),
        registry=AdapterRegistry(sample_pool),
    )
    app = build_http_app(Api(service, admin_for(sample_pool, redis_client), dict, None), admission=(2, 1))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
        queries = [f"华夏银行江油西山支行{i}" for i in range(3)]
        admitted = [asyncio.create_task(client.post("/api/v1/query", json={"query": q})) for q in queries]
        await eventually(lambda: at_work == 2 and admission_of(app).waiting == 1)  # two at work, one waiting
        refused = await client.post("/api/v1/query", json={"query": "工行徐州经济开发区支行"})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "overloaded"
        assert (await client.get("/healthz")).status_code == 200  # probes are never queued
        release.set()
        assert [r.status_code for r in await asyncio.gather(*admitted)] == [200, 200, 200]
    await service.query_log.close()


async def test_admin_registration_honours_base_model_aliases(sample_pool, redis_client, tmp_path) -> None:
    import json
    import shutil

    from serve_app.errors import AdapterInvalid, NoModelDeployment, NotReady, Overloaded, UnknownAdapter
    from serve_app.models.adapters import AdapterIn
    from serve_app.models.paths import ModelPaths
    from serve_app.models.tiny import make_tiny_model

    demo = make_tiny_model(tmp_path / "models")
    foreign = demo.adapter_root / "from_the_hub"
    shutil.copytree(demo.adapters["job_22"], foreign)
    config = json.loads((foreign / "adapter_config.json").read_text())
    (foreign / "adapter_config.json").write_text(json.dumps(config | {"base_model_name_or_path": "Org/Base-0.5B"}))
    registry, board = AdapterRegistry(sample_pool), ModelBoard(redis_client, prefix=f"t{free_port()}")
    name = f"alias_{free_port()}"
    plain = AdminService(registry, board, ModelPaths.resolve(demo.base.parent), None)
    with pytest.raises(AdapterInvalid, match=r"Org/Base-0\.5B"):
        await plain.register_adapter(AdapterIn(name=name, path="from_the_hub"))
    aliased = AdminService(registry, board, ModelPaths.resolve(demo.base.parent, aliases=["Org/Base-0.5B"]), None)
    created = await aliased.register_adapter(AdapterIn(name=name, path="from_the_hub"))
    assert created.base_model == "Org/Base-0.5B" and created.ref == f"{name}@{created.revision}"
    await aliased.delete_adapter(name)
    with pytest.raises(UnknownAdapter):
        await aliased.delete_adapter(name)  # deleted: 404, not 422
    with pytest.raises(NoModelDeployment):
        await admin_for(sample_pool, redis_client).register_adapter(AdapterIn(name=name, path="from_the_hub"))

    async def hangs() -> None:
        await asyncio.sleep(3600)

    async def queue_full() -> None:
        raise Overloaded("full")

    started = asyncio.get_running_loop().time()
    with pytest.raises(NotReady, match="health check"):
        await AdminService(registry, board, None, hangs).model_state()
    assert asyncio.get_running_loop().time() - started < 30  # bounded by MODEL_HEALTH_TIMEOUT_S, does not hang
    assert await AdminService(registry, board, None, queue_full).model_state() == "busy"


def test_openapi_lists_every_route_and_the_errors_each_can_give() -> None:
    from starlette.routing import Route

    from serve_app.api.endpoints import ENDPOINTS
    from serve_app.api.openapi import openapi_document

    document = openapi_document(ENDPOINTS)
    app = build_http_app(Api(None, None, dict, None))  # type: ignore[arg-type]
    routes = {(r.path, m.lower()) for r in app.routes if isinstance(r, Route) for m in r.methods or () if m != "HEAD"}
    assert routes == {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert "/api/v1/stats" in document["paths"]
    adapters = document["paths"]["/api/v1/adapters"]
    assert {"201", "409", "422", "503", "504"} <= set(adapters["post"]["responses"])
    assert {"503"} <= set(adapters["get"]["responses"])
    assert "404" in document["paths"]["/api/v1/adapters/{name}"]["delete"]["responses"]
    # The stable codes a client branches on are enumerated: every reason, every error code.
    schemas = document["components"]["schemas"]
    assert {"unique_fit", "branch_retired", "no_branch_in_place"} <= set(
        schemas["QueryResult"]["properties"]["reason"]["enum"]
    )
    codes = set(schemas["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    assert {"retired_code", "quota_exceeded", "body_timeout", "not_found", "internal_error"} <= codes


@pytest.mark.slow
async def test_pooled_redis_connections_survive_a_redis_restart(tmp_path) -> None:
    """Connections pooled before Redis restarts are dead; each is used once more after the restart and
    must be replaced on that use, not surface as an error (it did: a 503 long after Redis came back)."""
    from serve_app.ops.embedded import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "valkey", port=free_port())
    server.start()
    client = create_redis(server.url)
    try:
        await asyncio.gather(*(client.blpop(["nothing"], timeout=0.2) for _ in range(8)))  # 8 pooled connections
        server.stop()
        server.start()  # same port
        for _ in range(16):  # more uses than pooled connections: every stale one is taken once
            assert await client.incr("after-restart") >= 1
        assert int(await client.get("after-restart")) == 16
    finally:
        await client.aclose()
        server.stop()
