"""Every row of the documented error table, over HTTP: the status and code a client is told it gets.

The table in ``docs/api.md`` is read here and must agree with the service's own table
(``serve_app.api.errors``); then every code in it is provoked through the real HTTP app (Starlette, the
handlers, the error table) over a real PostgreSQL and Valkey, each by the request that should give it.
Where a dependency's failure is the point (a model replica gone, a back-end timing out), a fake extraction
step — named as such — raises the domain error the real one would.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from serve_app import errors as e
from serve_app.api.app import build_http_app
from serve_app.api.errors import ERRORS, HTTP_ERROR_CODES
from serve_app.api.parts import Api
from serve_app.config import IngressConfig
from serve_app.db.pool import create_pool
from serve_app.directory.browse import DirectoryBrowser
from serve_app.directory.codes import check_digit
from serve_app.extraction.model_use import rules_outcome
from serve_app.extraction.rules import RulesExtractor
from serve_app.extraction.vocabulary import Vocabulary
from serve_app.jobs.store import JobStore
from serve_app.models.adapters import AdapterRegistry
from serve_app.models.board import ModelBoard
from serve_app.models.paths import ModelPaths
from serve_app.models.tiny import make_tiny_model
from serve_app.query.retrieval import BranchRepository
from serve_app.schemas import ExtractionOutcome
from serve_app.service.admin import AdminService
from serve_app.service.confirmations import ConfirmationStore
from serve_app.service.query_log import QueryLog
from serve_app.service.query_service import QueryService
from serve_app.service.rate_limit import RateLimiter
from serve_app.service.result_cache import ResultCache
from serve_app.service.tenants import KeyStore
from serve_app.training.run_store import TrainingRunStore
from tests.conftest import loaded_database

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"
ADMIN = {"authorization": "Bearer s3cret"}
SEED = "华夏银行江油西山支行"


def documented_errors() -> dict[str, int]:
    """The error table of docs/api.md: each code → its status."""
    table = DOCS.read_text("utf-8").split("| status | code | when |", 1)[1].split("\n\n", 1)[0]
    documented = {}
    for row in table.splitlines()[2:]:
        status, codes = row.split("|")[1:3]
        for code in re.findall(r"`(\w+)`", codes):
            documented[code] = int(status)
    return documented


def test_the_documented_table_is_the_services_table() -> None:
    served = {spec.code: spec.status for spec in ERRORS.values()} | {v: k for k, v in HTTP_ERROR_CODES.items()}
    assert documented_errors() == served


class FakeExtraction:
    """Fake of the extraction step: the rules, or the domain error ``failure`` set by a test."""

    def __init__(self, extractor: RulesExtractor) -> None:
        self.extractor = extractor
        self.failure: e.ServiceError | None = None

    async def __call__(self, normalized: str, adapter: str | None, data_version: int | None) -> ExtractionOutcome:
        if self.failure is not None:
            raise self.failure
        if adapter is not None:
            raise e.NoModelDeployment(f"adapter {adapter!r} was asked for, but this application runs without a model")
        return rules_outcome(self.extractor.extract(normalized))


class App:
    def __init__(self, client: httpx.AsyncClient, api: Api, extraction: FakeExtraction, key: str, fresh_key: str):
        self.client, self.api, self.extraction = client, api, extraction
        self.key, self.fresh_key = key, fresh_key  # ``fresh_key``'s tenant has a bucket of its own
        self.models_ready: Callable[[], Awaitable[None]] | None = None

    async def query(self, body: dict, **headers: str) -> httpx.Response:
        return await self.client.post("/api/v1/query", json=body, headers={"x-api-key": self.key} | headers)

    async def get(self, path: str, **headers: str) -> httpx.Response:
        return await self.client.get(path, headers={"x-api-key": self.key} | headers)


@pytest.fixture(scope="module")
async def app(embedded_postgres, embedded_redis, tmp_path_factory) -> AsyncIterator[App]:
    from serve_app.db.redis_client import create_redis

    pool = await create_pool(await loaded_database(embedded_postgres, "errors"))
    redis = create_redis(embedded_redis.url)
    demo = make_tiny_model(tmp_path_factory.mktemp("models"))
    async with pool.acquire() as conn:
        extraction = FakeExtraction(RulesExtractor(await Vocabulary.from_database(conn)))
    prefix = f"errors{uuid.uuid4().hex[:6]}"
    registry = AdapterRegistry(pool)
    service = QueryService(
        extraction,
        BranchRepository(pool),
        ResultCache(None, 60, 0),
        RateLimiter(redis, rate_per_s=0.001, burst=1000, prefix=prefix),
        QueryLog(pool),
        registry,
        confirmations=ConfirmationStore(pool),
    )
    holder: dict[str, App] = {}

    async def check_models() -> None:  # the model replicas' health, as the test sets it
        if holder["app"].models_ready is not None:
            await holder["app"].models_ready()

    admin = AdminService(registry, ModelBoard(redis, prefix=prefix), ModelPaths.resolve(demo.base.parent), check_models)
    keys = KeyStore(pool)
    key, _ = await keys.create("acme", ["job_22"], None)
    fresh_key, _ = await keys.create("thrifty", [], None)
    config = IngressConfig(
        auth="keys", max_body_bytes=1024, max_batch_lines=3, max_upload_bytes=4096, body_grace_s=0.5,
        max_stored_rows_per_tenant=50,
    )  # fmt: skip
    api = Api(service, admin, dict, SecretStr("s3cret"), config, DirectoryBrowser(pool), JobStore(pool), keys,
              training=(TrainingRunStore(pool), FakeLauncherThatNeverStarts()))  # fmt: skip
    transport = httpx.ASGITransport(app=build_http_app(api))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        holder["app"] = App(client, api, extraction, key, fresh_key)
        assert (
            await client.post("/api/v1/adapters", json={"name": "job_22", "path": "job_22"}, headers=ADMIN)
        ).is_success
        yield holder["app"]
    await service.query_log.close()
    await redis.aclose()
    await pool.close()


async def _with_failure(app: App, failure: e.ServiceError) -> httpx.Response:
    app.extraction.failure = failure
    try:
        return await app.query({"query": f"{SEED}{uuid.uuid4().hex[:6]}"})
    finally:
        app.extraction.failure = None


async def _over_quota(app: App) -> httpx.Response:
    """A tenant of its own (its bucket is no other trigger's) sends more rows than it may store (50 here)."""
    key, _ = await app.api.keys.create(f"hoarder-{uuid.uuid4().hex[:6]}", [], None)  # type: ignore[union-attr]
    upload = ("对方行名\n" + f"{SEED}\n" * 60).encode()
    return await app.client.post("/api/v1/jobs", content=upload, headers={"x-api-key": key})


async def _slow_body(app: App) -> httpx.Response:
    """A body sent a byte at a time, slower than the pace allows (the grace here is 0.5 s)."""

    async def drip():
        for byte in b'{"query": "x"}':
            yield bytes([byte])
            await asyncio.sleep(0.2)

    return await app.client.post("/api/v1/query", content=drip(), headers={"x-api-key": app.key})


async def _retired_code(app: App) -> httpx.Response:
    """A code retired in this module's own directory (as a snapshot without it would), then looked up."""
    code = "102100000056"  # 中国工商银行北京崇文门外大街支行: no other test here asks for it
    await app.api.service.repository.pool.execute(
        "UPDATE branches SET retired_on = '2026-12-01', retired_version = 1 WHERE code = $1", code
    )
    return await app.get(f"/api/v1/branches/{code}")


async def _admin_disabled(app: App) -> httpx.Response:
    unset = build_http_app(Api(app.api.service, app.api.admin, dict, admin_token=None))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=unset), base_url="http://localhost") as client:
        return await client.get("/api/v1/adapters")


async def _rate_limited(app: App) -> httpx.Response:
    limiter = app.api.service.rate_limiter
    limiter.burst = 2  # a bucket of two (the fresh tenant's is new), nearly no refill
    try:
        headers = {"x-api-key": app.fresh_key}
        responses = [await app.client.get("/api/v1/branches/304659715925", headers=headers) for _ in range(3)]
    finally:
        limiter.burst = 1000
    assert [r.status_code for r in responses[:2]] == [200, 200]
    return responses[2]


async def _not_ready(app: App) -> httpx.Response:
    async def unhealthy() -> None:
        raise e.ModelUnavailable("the engine failed")

    app.models_ready = unhealthy
    try:
        return await app.client.get("/readyz")
    finally:
        app.models_ready = None


async def _job_not_done(app: App) -> httpx.Response:
    upload = ("对方行名\n" + SEED + "\n").encode()
    created = await app.client.post(
        "/api/v1/jobs", content=upload, headers={"x-api-key": app.key, "content-type": "text/csv"}
    )
    return await app.get(f"/api/v1/jobs/{created.json()['id']}/result.csv")


async def _unknown_row(app: App) -> httpx.Response:
    upload = ("对方行名\n" + SEED + "\n").encode()
    created = await app.client.post(
        "/api/v1/jobs", content=upload, headers={"x-api-key": app.key, "content-type": "text/csv"}
    )
    return await app.client.post(
        f"/api/v1/jobs/{created.json()['id']}/rows/2/decision", json={"none": True}, headers={"x-api-key": app.key}
    )


class FakeLauncherThatNeverStarts:
    """A fake: runs stay queued (what matters here is the API's answer, not training)."""

    async def launch(self, run_id: uuid.UUID) -> None:
        return None


async def _model_warming(app: App) -> httpx.Response:
    """The same service with its ingress told the model replicas are still being built."""
    config = app.api.config.model_copy(update={"model_warming": True})
    warming = Api(app.api.service, app.api.admin, dict, SecretStr("s3cret"), config, keys=app.api.keys)
    transport = httpx.ASGITransport(app=build_http_app(warming))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        body = {"query": SEED, "model": "job_22"}
        return await client.post("/api/v1/query", json=body, headers={"x-api-key": app.key})


async def _training_in_progress(app: App) -> httpx.Response:
    """A run of job_22 already queued (its launcher here never starts one, so it stays queued)."""
    await app.api.training[0].create("job_22", "acme", 5)  # type: ignore[index]
    return await app.client.post("/api/v1/adapters/job_22/training", json={}, headers={"x-api-key": app.key})


UNKNOWN_CODE = "10210000999" + str(check_digit("10210000999"))
#: How each documented code is provoked.
TRIGGERS: dict[str, Callable[[App], Awaitable[httpx.Response]]] = {
    "invalid_json": lambda app: app.client.post("/api/v1/query", content=b"{", headers={"x-api-key": app.key}),
    "unauthorized": lambda app: app.client.post("/api/v1/query", json={"query": SEED}, headers={"x-api-key": "sak_x"}),
    "admin_disabled": _admin_disabled,
    "forbidden": lambda app: app.query({"query": SEED, "model": "job_23"}),
    "unknown_code": lambda app: app.get(f"/api/v1/branches/{UNKNOWN_CODE}"),
    "unknown_model": lambda app: app.client.delete("/api/v1/adapters/job_99", headers=ADMIN),
    "unknown_job": lambda app: app.get(f"/api/v1/jobs/{uuid.uuid4()}"),
    "unknown_row": _unknown_row,
    "unknown_training_run": lambda app: app.client.get(
        f"/api/v1/adapters/job_22/training/{uuid.uuid4()}", headers={"x-api-key": app.key}
    ),
    "training_in_progress": _training_in_progress,
    "model_warming": _model_warming,
    "unknown_confirmation": lambda app: app.client.delete(
        "/api/v1/confirmations/987654", headers={"x-api-key": app.key}
    ),
    "retired_code": lambda app: _retired_code(app),
    "body_timeout": lambda app: _slow_body(app),
    "not_found": lambda app: app.get("/no/such/route"),
    "method_not_allowed": lambda app: app.client.delete("/api/v1/query"),
    "adapter_exists": lambda app: app.client.post(
        "/api/v1/adapters", json={"name": "job_22", "path": "job_22"}, headers=ADMIN
    ),
    "job_not_done": _job_not_done,
    "quota_exceeded": lambda app: _over_quota(app),
    "body_too_large": lambda app: app.query({"query": SEED, "padding": "x" * 2000}),
    "too_many_rows": lambda app: app.client.post(
        "/api/v1/query/batch", json={"queries": [SEED] * 4}, headers={"x-api-key": app.key}
    ),
    "invalid_request": lambda app: app.query({"query": ""}),
    "invalid_code": lambda app: app.get("/api/v1/branches/304659715926"),
    "unreadable_file": lambda app: app.client.post(
        "/api/v1/jobs", content=bytes(range(256)) * 4, headers={"x-api-key": app.key}
    ),
    "adapter_unusable": lambda app: app.client.post(
        "/api/v1/adapters", json={"name": "job_77", "path": "nowhere"}, headers=ADMIN
    ),
    "no_model": lambda app: app.query({"query": f"{SEED}{uuid.uuid4().hex[:6]}", "model": "job_22"}),
    "rate_limited": _rate_limited,
    "unavailable": lambda app: _with_failure(app, e.unavailable("the branch directory (PostgreSQL)")),
    "overloaded": lambda app: _with_failure(app, e.Overloaded("the service is at capacity; retry shortly")),
    "model_unavailable": lambda app: _with_failure(app, e.ModelUnavailable("no replica of the model could answer")),
    "not_ready": _not_ready,
    "timeout": lambda app: _with_failure(app, e.DependencyTimeout("extraction did not finish within 10 s")),
}


def test_every_documented_code_has_a_trigger() -> None:
    assert set(TRIGGERS) == set(documented_errors())


@pytest.mark.parametrize("code", sorted(TRIGGERS))
async def test_each_documented_error_over_http(app: App, code: str) -> None:
    response = await TRIGGERS[code](app)
    status = documented_errors()[code]
    assert (response.status_code, response.json().get("error", {}).get("code")) == (status, code), response.text
    details = {"branch"} if code == "retired_code" else set()  # the record of the retired code
    assert set(response.json()["error"]) == {"code", "message"} | details and "Traceback" not in response.text
    assert ("retry-after" in response.headers) == (
        status in {429, 503, 504} or code in {"job_not_done", "training_in_progress"}
    )
