"""The bulk, browsing and tenant API over HTTP (Starlette in this process, no Ray), on a real PostgreSQL and
Valkey: keys and what they allow, jobs end to end, batches, browsing and its query plans."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from urllib.parse import quote

import httpx
import openpyxl
import pytest
from pydantic import SecretStr

from serve_app.api.app import build_http_app
from serve_app.api.parts import Api
from serve_app.config import IngressConfig, IngressTunables, JobTunables
from serve_app.db.pool import create_pool
from serve_app.directory.browse import BrowseQuery, DirectoryBrowser, browse_statements
from serve_app.jobs.runner import JobRunner
from serve_app.jobs.store import JobStore
from serve_app.models.adapters import AdapterRegistry
from serve_app.models.board import ModelBoard
from serve_app.service.admin import AdminService
from serve_app.service.assembly import assemble_query_service
from serve_app.service.tenants import KEY_CACHE_TTL_S, KeyStore
from serve_app.settings import Settings
from tests.conftest import loaded_database

SEED = "华夏银行江油西山支行"
SEED_CODE = "304659715925"


@pytest.fixture(scope="module")
async def api_pool(embedded_postgres) -> AsyncIterator:
    pool = await create_pool(await loaded_database(embedded_postgres, "api"))
    yield pool
    await pool.close()


async def build(pool, redis_client, **config) -> tuple[Api, JobRunner]:
    tunables = IngressTunables(rate_limit_per_s=50, rate_limit_burst=100)
    service = await assemble_query_service(pool, redis_client, Settings(), tunables)
    prefix = f"api{uuid.uuid4().hex[:6]}"
    service.result_cache.prefix = service.rate_limiter.prefix = prefix
    admin = AdminService(AdapterRegistry(pool), ModelBoard(redis_client, prefix=prefix), None, None)
    api = Api(
        service,
        admin,
        dict,
        SecretStr("s3cret"),
        IngressConfig(**config),
        browser=DirectoryBrowser(pool),
        jobs=JobStore(pool),
        keys=KeyStore(pool),
    )
    return api, JobRunner(api.jobs, service.answer, JobTunables(chunk_rows=50))  # type: ignore[arg-type]


@pytest.fixture
async def keyed(api_pool, redis_client) -> AsyncIterator[tuple[httpx.AsyncClient, JobRunner, KeyStore]]:
    api, runner = await build(api_pool, redis_client, auth="keys", max_upload_bytes=8192, max_job_rows=50)
    transport = httpx.ASGITransport(app=build_http_app(api))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield client, runner, api.keys  # type: ignore[misc]
    await api.service.query_log.close()


async def finish(runner: JobRunner, client: httpx.AsyncClient, job_id: str, key: str) -> dict:
    deadline = time.monotonic() + 60
    headers = {"x-api-key": key}
    while (status := (await client.get(f"/api/v1/jobs/{job_id}", headers=headers)).json())["state"] != "done":
        assert time.monotonic() < deadline, status
        await runner.run_chunk()
    return status


async def test_keys_gate_the_api_and_a_revoked_key_stops_within_seconds(keyed) -> None:
    client, _, keys = keyed
    key, record = await keys.create("acme", ["job_22"], None)
    assert (await client.post("/api/v1/query", json={"query": SEED})).status_code == 401
    wrong = await client.post("/api/v1/query", json={"query": SEED}, headers={"x-api-key": key + "x"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    ok = await client.post("/api/v1/query", json={"query": SEED}, headers={"x-api-key": key})
    assert ok.status_code == 200 and ok.json()["matches"][0]["code"] == SEED_CODE
    assert (await client.get("/healthz")).status_code == 200  # probes and the page need no key
    assert (await client.get("/")).status_code == 200

    assert await keys.revoke(record.id) and not await keys.revoke(record.id)
    revoked_at = time.monotonic()
    while (await client.get(f"/api/v1/branches/{SEED_CODE}", headers={"x-api-key": key})).status_code == 200:
        assert time.monotonic() - revoked_at < KEY_CACHE_TTL_S + 30  # does not hang (the cache lasts the TTL)
        await asyncio.sleep(0.1)
    gone = await client.post("/api/v1/query", json={"query": SEED}, headers={"x-api-key": key})
    assert gone.status_code == 401


async def test_a_key_names_only_its_own_adapters(keyed) -> None:
    client, _, keys = keyed
    key, _ = await keys.create("acme", ["job_22"], None)
    other = await client.post("/api/v1/query", json={"query": SEED, "model": "job_23"}, headers={"x-api-key": key})
    assert other.status_code == 403 and other.json()["error"]["code"] == "forbidden"
    # Its own adapter passes the key check and meets the registry (this database registers none).
    own = await client.post("/api/v1/query", json={"query": SEED, "model": "job_22"}, headers={"x-api-key": key})
    assert own.status_code == 404 and own.json()["error"]["code"] == "unknown_model"
    upload = await client.post(
        "/api/v1/jobs?model=job_23", content="bank\n华夏银行成都分行\n".encode(), headers={"x-api-key": key}
    )
    assert upload.status_code == 403


async def test_rate_limits_are_per_tenant(keyed) -> None:
    client, _, keys = keyed
    slow, _ = await keys.create("slow-tenant", [], 1.0)  # 1/s: a burst of 2
    slow_too, _ = await keys.create("slow-tenant", [], 1.0)
    fast, _ = await keys.create("fast-tenant", [], None)
    codes = [
        (await client.get(f"/api/v1/branches/{SEED_CODE}", headers={"x-api-key": k})).status_code
        for k in (slow, slow_too, slow, slow_too)
    ]
    assert codes[:2] == [200, 200] and 429 in codes[2:]  # two keys of one tenant share its bucket
    assert (await client.get(f"/api/v1/branches/{SEED_CODE}", headers={"x-api-key": fast})).status_code == 200


async def test_open_mode_buckets_by_address_whatever_key_is_sent(api_pool, redis_client) -> None:
    api, _ = await build(api_pool, redis_client)
    api.service.rate_limiter.rate_per_s, api.service.rate_limiter.burst = 1, 2
    transport = httpx.ASGITransport(app=build_http_app(api))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        codes = [
            (
                await client.post("/api/v1/query", json={"query": SEED}, headers={"x-api-key": uuid.uuid4().hex})
            ).status_code
            for _ in range(4)
        ]
    await api.service.query_log.close()
    assert codes[:2] == [200, 200] and codes[2:] == [429, 429]


async def test_a_job_over_http_from_upload_to_both_downloads(keyed) -> None:
    client, runner, keys = keyed
    key, _ = await keys.create("acme", [], None)
    other, _ = await keys.create("rival", [], None)
    statement = "序号,对方开户行,金额\n1,华夏银行江油西山支行,10\n2,,3\n3,火星银行奥林匹斯山支行,5\n"
    statement += "4,建行人民路支行,1\n"
    created = await client.post(
        "/api/v1/jobs?filename=对账单.csv",
        content=statement.encode("gbk"),
        headers={"x-api-key": key, "content-type": "text/csv"},
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert created.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert (job["total_rows"], job["text_column"], job["state"]) == (4, "对方开户行", "queued")
    early = await client.get(f"/api/v1/jobs/{job['id']}/result.csv", headers={"x-api-key": key})
    assert early.status_code == 409 and early.json()["error"]["code"] == "job_not_done"
    assert (await client.get(f"/api/v1/jobs/{job['id']}", headers={"x-api-key": other})).status_code == 404
    listed = (await client.get("/api/v1/jobs", headers={"x-api-key": other})).json()
    assert job["id"] not in [j["id"] for j in listed]

    status = await finish(runner, client, job["id"], key)
    assert status["counts"]["skipped"] == 1 and status["counts"]["error"] == 0 and status["done_rows"] == 4

    chinese = await client.get(f"/api/v1/jobs/{job['id']}/result.csv", headers={"x-api-key": key})
    assert chinese.content.decode("utf-8-sig").startswith("序号,对方开户行,金额,联行号,行名,银行")  # the default
    download = await client.get(f"/api/v1/jobs/{job['id']}/result.csv?lang=en", headers={"x-api-key": key})
    assert download.status_code == 200
    assert f"filename*=UTF-8''{quote('对账单.result.csv')}" in download.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"))))
    header, body = rows[0], rows[1:]
    assert header[:3] == ["序号", "对方开户行", "金额"] and header[3:6] == ["code", "official_name", "bank"]
    assert [row[0] for row in body] == ["1", "2", "3", "4"]
    by_column = [dict(zip(header, row, strict=True)) for row in body]
    assert by_column[0]["code"] == SEED_CODE and by_column[0]["verdict"] == "match"
    assert (by_column[1]["verdict"], by_column[1]["reason"], by_column[1]["error"]) == ("skipped", "no_bank_name", "")
    assert by_column[2]["verdict"] == "none" and not by_column[2]["code"]

    xlsx = await client.get(f"/api/v1/jobs/{job['id']}/result.xlsx?lang=en", headers={"x-api-key": key})
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active

    def text(cell: object) -> str:  # dates come back as dates, numbers as numbers
        return "" if cell is None else cell.strftime("%Y-%m-%d") if isinstance(cell, datetime) else str(cell)

    assert [[text(cell) for cell in row] for row in sheet.iter_rows(values_only=True)] == rows

    assert (await client.delete(f"/api/v1/jobs/{job['id']}", headers={"x-api-key": other})).status_code == 404
    assert (await client.delete(f"/api/v1/jobs/{job['id']}", headers={"x-api-key": key})).status_code == 204


async def test_an_xlsx_job_over_http(keyed) -> None:
    client, runner, keys = keyed
    key, _ = await keys.create("sheets", [], None)
    workbook = openpyxl.Workbook()
    workbook.active.append(["户名", "收款人开户行"])
    workbook.active.append(["张三", SEED])
    workbook.active.append(["李四", "建行人民路支行"])
    data = io.BytesIO()
    workbook.save(data)
    created = await client.post("/api/v1/jobs?filename=收款.xlsx", content=data.getvalue(), headers={"x-api-key": key})
    assert created.status_code == 201 and created.json()["format"] == "xlsx", created.text
    await finish(runner, client, created.json()["id"], key)
    result = await client.get(f"/api/v1/jobs/{created.json()['id']}/result.xlsx", headers={"x-api-key": key})
    rows = list(openpyxl.load_workbook(io.BytesIO(result.content)).active.iter_rows(values_only=True))
    assert rows[0][:3] == ("户名", "收款人开户行", "联行号") and rows[1][2] == SEED_CODE and len(rows) == 3


@pytest.mark.parametrize(
    ("query", "body", "status", "code"),
    [
        ("", b"\xd0\xcf\x11\xe0" + bytes(64), 422, "unreadable_file"),
        ("", b"\x89PNG\r\n\x1a\n\x00\x00", 422, "unreadable_file"),
        ("", "日期,金额\n1,2\n".encode(), 422, "unreadable_file"),  # no bank column
        ("?column=付款行", "对方行名\n华夏银行成都分行\n".encode(), 422, "unreadable_file"),
        ("?encoding=utf-8", "对方行名\n华夏银行成都分行\n".encode("gbk"), 422, "unreadable_file"),
        ("", ("对方行名\n" + "华夏银行成都分行\n" * 51).encode(), 413, "too_many_rows"),
        ("", ("对方行名\n" + "华夏银行成都分行" * 600).encode(), 413, "body_too_large"),
        ("?format=pdf", "对方行名\n华夏银行成都分行\n".encode(), 422, "invalid_request"),
        ("?colour=red", "对方行名\n华夏银行成都分行\n".encode(), 422, "invalid_request"),
    ],
)
async def test_bad_files_are_a_clear_4xx_and_create_no_job(keyed, query, body, status, code) -> None:
    client, _, keys = keyed
    key, _ = await keys.create(f"bad-{uuid.uuid4().hex[:6]}", [], None)
    response = await client.post(f"/api/v1/jobs{query}", content=body, headers={"x-api-key": key})
    assert response.status_code == status and response.json()["error"]["code"] == code, response.text
    assert response.json()["error"]["message"]
    assert (await client.get("/api/v1/jobs", headers={"x-api-key": key})).json() == []


async def test_batch_answers_in_order_with_errors_in_place(keyed) -> None:
    client, _, keys = keyed
    key, _ = await keys.create("batcher", [], None)
    lines = [SEED, "", "建行人民路支行", "行" * 600]
    response = await client.post("/api/v1/query/batch", json={"queries": lines}, headers={"x-api-key": key})
    assert response.status_code == 200
    results = response.json()["results"]
    assert results[0]["result"]["matches"][0]["code"] == SEED_CODE and results[2]["result"]["query"] == lines[2]
    assert results[1]["error"]["code"] == "invalid_request" and results[3]["error"]["code"] == "invalid_request"
    too_many = await client.post("/api/v1/query/batch", json={"queries": ["x"] * 1001}, headers={"x-api-key": key})
    assert too_many.status_code == 413 and too_many.json()["error"]["code"] == "too_many_rows"


async def test_browse_filters_pages_and_totals(keyed) -> None:
    client, _, keys = keyed
    key, _ = await keys.create("browser", [], None)
    headers = {"x-api-key": key}
    by_alias = (await client.get("/api/v1/branches?bank=工行&city=北京市&page_size=5", headers=headers)).json()
    by_name = (await client.get("/api/v1/branches?bank=中国工商银行&city=北京市&page_size=5", headers=headers)).json()
    assert by_alias == by_name and by_alias["total"] > 5 and len(by_alias["items"]) == 5
    assert all(item["bank"] == "中国工商银行" and item["city"] == "北京市" for item in by_alias["items"])
    codes = [item["code"] for item in by_alias["items"]]
    assert codes == sorted(codes)
    last_page = (by_alias["total"] - 1) // 5 + 1
    tail = await client.get(f"/api/v1/branches?bank=工行&city=北京市&page_size=5&page={last_page}", headers=headers)
    assert 1 <= len(tail.json()["items"]) <= 5
    found = (await client.get("/api/v1/branches?q=江油西山", headers=headers)).json()
    assert [item["code"] for item in found["items"]] == [SEED_CODE] and found["total"] == 1
    wild = (await client.get("/api/v1/branches?q=%25", headers=headers)).json()
    assert wild["total"] == 0  # a LIKE wildcard in the text is a character, not a pattern
    bad = await client.get("/api/v1/branches?page_size=1000", headers=headers)
    assert bad.status_code == 422 and "page_size" in bad.json()["error"]["message"]
    banks = (await client.get("/api/v1/banks", headers=headers)).json()
    counts = {bank["name"]: bank["branches"] for bank in banks}
    icbc = (await client.get("/api/v1/branches?bank=中国工商银行&page_size=1", headers=headers)).json()["total"]
    assert counts["中国工商银行"] == icbc and banks[0]["branches"] >= banks[-1]["branches"]
    # Places as queries write them (成都, 四川, 江油) browse as the directory names them (成都市, 四川省, 江油市).
    for short, full in (
        ("city=成都", "city=成都市"),
        ("province=四川", "province=四川省"),
        ("district=江油", "district=江油市"),
    ):
        a = (await client.get(f"/api/v1/branches?{short}&page_size=3", headers=headers)).json()
        b = (await client.get(f"/api/v1/branches?{full}&page_size=3", headers=headers)).json()
        assert a == b and a["total"] > 0, short
    for pasted in ("3046 5971 5925", "304-659-715-925", "３０４６５９７１５９２５"):  # as people paste codes
        record = await client.get(f"/api/v1/branches/{quote(pasted)}", headers=headers)
        assert record.status_code == 200 and record.json()["code"] == SEED_CODE, pasted


@pytest.mark.parametrize(
    "filters",
    [
        {"bank": "中国工商银行"},
        {"bank": "中国工商银行", "city": "徐州市"},
        {"province": "江苏省"},
        {"province": "江苏省", "city": "徐州市"},
        {"city": "徐州市", "district": "铜山区"},
        {"district": "江油市"},
        {"q": "经济开发区"},
        {"bank": "中国工商银行", "q": "经济开发区"},
    ],
)
async def test_every_browse_filter_has_an_indexed_plan_at_scale(scale_pool, filters) -> None:
    page, count, arguments = browse_statements(BrowseQuery(**filters))
    async with scale_pool.acquire() as conn:
        for statement, extra in ((count, ()), (page, (20, 0))):
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN (COSTS OFF) " + statement, *arguments, *extra))
            assert "Seq Scan on branches" not in plan, plan
