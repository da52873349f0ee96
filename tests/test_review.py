"""People decide a job's unsure rows once, and their tenant remembers: the review queue, decisions, the
result files that carry them, confirmed answers for the tenant alone, and a decision that stops being used
when its branch is retired or the confirmation is deleted. Real PostgreSQL and Redis, the HTTP app in
process."""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import openpyxl
import pytest

from serve_app.api.app import build_http_app
from serve_app.api.parts import Api
from serve_app.db.pool import create_pool
from serve_app.jobs.runner import JobRunner
from tests.conftest import loaded_database
from tests.test_api_bulk import build

SEED = "华夏银行江油西山支行"
#: Texts the sample directory answers ambiguous (several 人民路支行 of 建行) and none (a bank alone; a
#: district of another city).
SEVERAL = "建行人民路支行"
BANK_ONLY = "中国工商银行"
ELSEWHERE = "工行徐州经济开发区支行"


@pytest.fixture(scope="module")
async def review_pool(embedded_postgres) -> AsyncIterator:
    pool = await create_pool(await loaded_database(embedded_postgres, "review"))
    yield pool
    await pool.close()


@pytest.fixture
async def review_api(review_pool, redis_client) -> AsyncIterator[tuple[httpx.AsyncClient, JobRunner, dict, Api]]:
    api, runner = await build(review_pool, redis_client, auth="keys")
    run = uuid.uuid4().hex[:6]
    keys = {
        "clerk": (await api.keys.create(f"acme{run}", [], None, label="张三"))[0],  # type: ignore[union-attr]
        "other": (await api.keys.create(f"other{run}", [], None))[0],  # type: ignore[union-attr]
    }
    transport = httpx.ASGITransport(app=build_http_app(api))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield client, runner, keys, api
    await api.service.query_log.close()


async def _finished_job(client: httpx.AsyncClient, runner: JobRunner, key: str, texts: list[str]) -> str:
    upload = ("序号,对方开户行,金额\n" + "".join(f"{n},{text},{n}.50\n" for n, text in enumerate(texts, 1))).encode()
    created = await client.post("/api/v1/jobs?filename=对账单.csv", content=upload, headers={"x-api-key": key})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    deadline = time.monotonic() + 60
    while (await client.get(f"/api/v1/jobs/{job_id}", headers={"x-api-key": key})).json()["state"] != "done":
        assert time.monotonic() < deadline
        await runner.run_chunk()
    return job_id


async def _ask(client: httpx.AsyncClient, key: str, text: str) -> dict:
    response = await client.post("/api/v1/query", json={"query": text}, headers={"x-api-key": key})
    assert response.status_code == 200, response.text
    return response.json()


async def test_decisions_are_kept_with_the_job_and_its_files(review_api) -> None:
    client, runner, keys, _ = review_api
    clerk = {"x-api-key": keys["clerk"]}
    job_id = await _finished_job(client, runner, keys["clerk"], [SEED, SEVERAL, BANK_ONLY, ELSEWHERE])
    review = (await client.get(f"/api/v1/jobs/{job_id}/review", headers=clerk)).json()
    rows = {item["text"]: item for item in review["items"]}
    assert set(rows) == {SEVERAL, BANK_ONLY, ELSEWHERE} and review["undecided"] == 3  # the match is not asked
    several = rows[SEVERAL]
    assert several["verdict"] == "ambiguous" and len(several["candidates"]) >= 2
    assert several["cells"] == {"序号": "2", "金额": "2.50"} and several["decision"] is None
    assert all(choice["evidence"]["bank"] == "exact" for choice in several["candidates"])
    chosen = several["candidates"][1]["code"]

    decide = f"/api/v1/jobs/{job_id}/rows/{several['row']}/decision"
    decided = await client.post(decide, json={"code": f"{chosen[:4]} {chosen[4:]}"}, headers=clerk)  # pasted
    assert decided.status_code == 200, decided.text
    assert decided.json()["decision"] | {"decided_at": None} == {
        "code": chosen, "none": False, "decided_by": "张三", "decided_at": None}  # fmt: skip
    none = await client.post(f"/api/v1/jobs/{job_id}/rows/{rows[BANK_ONLY]['row']}/decision", json={"none": True},
                             headers=clerk)  # fmt: skip
    assert none.status_code == 200 and none.json()["decision"]["none"] is True

    refused = {
        "no such code": ({"code": "304659715926"}, 422),
        "both": ({"code": chosen, "none": True}, 422),
        "neither": ({}, 422),
        "a match row": ({"none": True}, 422, 1),
        "no such row": ({"none": True}, 404, 99),
    }
    for name, (body, status, *row) in refused.items():
        response = await client.post(f"/api/v1/jobs/{job_id}/rows/{row[0] if row else 2}/decision", json=body,
                                     headers=clerk)  # fmt: skip
        assert response.status_code == status, (name, response.text)
    other = {"x-api-key": keys["other"]}
    assert (await client.get(f"/api/v1/jobs/{job_id}/review", headers=other)).status_code == 404
    assert (await client.post(decide, json={"none": True}, headers=other)).status_code == 404

    status = (await client.get(f"/api/v1/jobs/{job_id}", headers=clerk)).json()
    assert status["decided_rows"] == 2
    left = (await client.get(f"/api/v1/jobs/{job_id}/review?decided=false", headers=clerk)).json()
    assert [item["text"] for item in left["items"]] == [ELSEWHERE] and left["undecided"] == 1

    table = list(csv.reader(io.StringIO((await client.get(f"/api/v1/jobs/{job_id}/result.csv",
                                                          headers=clerk)).text.lstrip("\ufeff"))))  # fmt: skip
    header = table[0]
    by_text = {row[1]: dict(zip(header, row, strict=True)) for row in table[1:]}
    assert (by_text[SEVERAL]["人工决定"], by_text[SEVERAL]["决定人"]) == (chosen, "张三")
    assert by_text[BANK_ONLY]["人工决定"] == "none" and by_text[SEED]["人工决定"] == ""
    workbook = (await client.get(f"/api/v1/jobs/{job_id}/result.xlsx", headers=clerk)).content
    sheet = openpyxl.load_workbook(io.BytesIO(workbook)).worksheets[0]
    values = list(sheet.values)
    decision_at = list(values[0]).index("人工决定")
    assert [row[decision_at] for row in values[1:]] == [None, chosen, "none", None]  # rebuilt after the decision


async def test_a_decision_answers_the_tenants_next_query_and_no_one_elses(review_api, review_pool) -> None:
    client, runner, keys, api = review_api
    job_id = await _finished_job(client, runner, keys["clerk"], [SEVERAL])
    clerk = {"x-api-key": keys["clerk"]}
    item = (await client.get(f"/api/v1/jobs/{job_id}/review", headers=clerk)).json()["items"][0]
    chosen = item["candidates"][0]["code"]
    await client.post(f"/api/v1/jobs/{job_id}/rows/{item['row']}/decision", json={"code": chosen}, headers=clerk)

    for _ in range(2):  # computed, then from the cache: a person's decision either way
        mine = await _ask(client, keys["clerk"], SEVERAL)
        assert (mine["verdict"], mine["reason"], mine["source"]) == ("match", "confirmed", "confirmed")
        assert mine["matches"][0]["code"] == chosen and mine["confirmation"]["decided_by"] == "张三"
    theirs = await _ask(client, keys["other"], SEVERAL)
    assert theirs["verdict"] == "ambiguous" and theirs["confirmation"] is None
    batch = await client.post("/api/v1/query/batch", json={"queries": [SEVERAL, SEED]}, headers=clerk)
    assert [r["result"]["reason"] for r in batch.json()["results"]] == ["confirmed", "unique_fit"]
    again = await _finished_job(client, runner, keys["clerk"], [SEVERAL])
    status = (await client.get(f"/api/v1/jobs/{again}", headers=clerk)).json()
    assert status["counts"]["match"] == 1  # next month's statement: the same text is no longer unsure

    listed = (await client.get("/api/v1/confirmations", headers=clerk)).json()
    assert [(c["text"], c["code"], c["decided_by"]) for c in listed["items"]] == [(SEVERAL, chosen, "张三")]
    exported = (await client.get("/api/v1/confirmations.csv", headers=clerk)).text
    assert list(csv.reader(io.StringIO(exported.lstrip("\ufeff"))))[1][1:3] == [SEVERAL, chosen]
    assert (await client.get("/api/v1/confirmations", headers={"x-api-key": keys["other"]})).json()["total"] == 0

    # The branch is retired by a later snapshot: the decision is no longer used, and the answer says why.
    await review_pool.execute("UPDATE branches SET retired_on = current_date WHERE code = $1", chosen)
    await review_pool.execute("UPDATE directory_meta SET value = (value::int + 1)::text WHERE key = 'data_version'")
    try:
        await api.service.refresh_data_version()
        stale = await _ask(client, keys["clerk"], SEVERAL)
        assert stale["reason"] != "confirmed" and stale["confirmation"]["used"] is False
        assert stale["confirmation"]["not_used_because"] == "retired"
    finally:
        await review_pool.execute("UPDATE branches SET retired_on = NULL WHERE code = $1", chosen)
    deleted = await client.delete(f"/api/v1/confirmations/{listed['items'][0]['id']}", headers=clerk)
    assert deleted.status_code == 204
    forgotten = await _ask(client, keys["clerk"], SEVERAL)
    assert forgotten["confirmation"] is None and forgotten["reason"] != "confirmed"
