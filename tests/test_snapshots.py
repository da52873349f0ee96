"""The directory as dated snapshots, on a real PostgreSQL and Valkey, through the HTTP API (no Ray): snapshot
A, a job answered against it, then snapshot B made from A by retiring 5 %, renaming 2 %, moving 1 % and
adding 3 % of its codes. Queries, codes in text, code lookups, cached answers, batch lines, the job's
recheck and browsing must then never ``match`` a retired code; renamed, moved and new branches are found;
the mass-retire guard, a code that returns, ``db diff`` and two loads at once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from serve_app.api.app import build_http_app
from serve_app.api.parts import Api
from serve_app.cli import main
from serve_app.config import IngressConfig, IngressTunables, JobTunables
from serve_app.db.migrate import apply_migrations
from serve_app.db.pool import connect_admin, create_pool
from serve_app.directory.browse import DirectoryBrowser
from serve_app.directory.churn import Churn, churn, read_rows, write_rows
from serve_app.directory.history import DirectoryHistory
from serve_app.directory.loader import LoadOptions, OlderSnapshotRefused, load_directory, read_directory_state
from serve_app.directory.records import demo_cnaps_path
from serve_app.directory.snapshots import MassRetireRefused
from serve_app.jobs.runner import JobRunner
from serve_app.jobs.store import JobStore
from serve_app.models.adapters import AdapterRegistry
from serve_app.models.board import ModelBoard
from serve_app.service.admin import AdminService
from serve_app.service.assembly import assemble_query_service
from serve_app.settings import Settings
from tests.conftest import create_database

DAY_A, DAY_B = date(2026, 11, 1), date(2026, 12, 1)
#: Codes of each kind asked about (all of them would make the module slow, not stronger).
PER_KIND = 40


async def new_directory(server, snapshot: Path, as_of: date) -> str:
    url = await create_database(server, "snap")
    conn = await connect_admin(url)
    try:
        await apply_migrations(conn)
        await load_directory(conn, snapshot, options=LoadOptions(as_of=as_of))
    finally:
        await conn.close()
    return url


async def load(url: str, snapshot: Path, **options) -> object:
    conn = await connect_admin(url)
    try:
        return await load_directory(conn, snapshot, options=LoadOptions(**options))
    finally:
        await conn.close()


def pays(answer: dict, code: str) -> bool:
    """Whether an answer says "pay to ``code``"."""
    return answer["verdict"] == "match" and answer["matches"][0]["code"] == code


@dataclass
class World:
    url: str
    pool: asyncpg.Pool
    client: httpx.AsyncClient
    runner: JobRunner
    names: dict[str, str]  # code → official name in A
    names_b: dict[str, str]  # code → official name in B
    churned: Churn
    cached_before: dict[str, dict]  # retired code → its answer before B (a cached match)
    job_id: str


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> tuple[Path, Path, Churn]:
    folder = tmp_path_factory.mktemp("snapshots")
    rows = read_rows(demo_cnaps_path())
    changed = churn(rows)
    return write_rows(folder / "a.csv", rows), write_rows(folder / "b.csv", changed.rows), changed


@pytest.fixture(scope="module")
async def world(embedded_postgres, embedded_redis, snapshots) -> AsyncIterator[World]:
    from serve_app.db.redis_client import create_redis

    path_a, path_b, changed = snapshots
    url = await new_directory(embedded_postgres, path_a, DAY_A)
    pool = await create_pool(url)
    redis = create_redis(embedded_redis.url)
    service = await assemble_query_service(pool, redis, Settings(), IngressTunables(rate_limit_per_s=1e4))
    prefix = f"snap{uuid.uuid4().hex[:6]}"
    service.result_cache.prefix = service.rate_limiter.prefix = prefix
    admin = AdminService(AdapterRegistry(pool), ModelBoard(redis, prefix=prefix), None, None)
    jobs = JobStore(pool)
    api = Api(service, admin, dict, SecretStr("s3cret"), IngressConfig(), DirectoryBrowser(pool), jobs, None,
              DirectoryHistory(pool))  # fmt: skip
    runner = JobRunner(jobs, service.answer, JobTunables(chunk_rows=100))
    names = {row["BankCode"]: row["LName"] for row in read_rows(path_a)}
    names_b = {row["BankCode"]: row["LName"] for row in changed.rows}
    transport = httpx.ASGITransport(app=build_http_app(api))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        # Before B: every retired code is a match, and that answer is in the cache.
        cached_before = {}
        for code in changed.retired[:PER_KIND]:
            answer = (await client.post("/api/v1/query", json={"query": names[code]})).json()
            cached_before[code] = answer
        statement = "对方行名\n" + "\n".join(names[code] for code in changed.retired[:PER_KIND] + changed.renamed[:10])
        submitted = await client.post("/api/v1/jobs?filename=a.csv", content=statement.encode())
        job_id = submitted.json()["id"]
        while (await client.get(f"/api/v1/jobs/{job_id}")).json()["state"] != "done":
            await runner.run_chunk()
        report = await load(url, path_b, as_of=DAY_B)
        assert report.counts["retired"] == len(changed.retired)  # type: ignore[attr-defined]
        await service.refresh_data_version()  # what the ingress does on the load's notification
        yield World(url, pool, client, runner, names, names_b, changed, cached_before, job_id)
    await service.query_log.close()
    await pool.close()
    await redis.aclose()


async def test_the_load_records_what_changed_and_the_directory_says_how_current_it_is(world: World) -> None:
    changed = world.churned
    info = (await world.client.get("/api/v1/directory")).json()
    assert info["as_of"] == str(DAY_B) and info["retired"] == len(changed.retired)
    assert info["last_load"]["mode"] == "snapshot" and info["last_load"]["counts"] == {
        "new": len(changed.new), "retired": len(changed.retired), "returned": 0, "renamed": len(changed.renamed),
        "moved": len(changed.moved), "changed": 0, "unchanged": info["last_load"]["counts"]["unchanged"],
        "active": info["active"], "retired_total": len(changed.retired),
    }  # fmt: skip
    since = (await world.client.get("/api/v1/directory/changes", params={"since": "2026-11-01", "kind": "retired",
                                                                          "page_size": 500})).json()  # fmt: skip
    assert since["total"] == len(changed.retired)
    assert {item["code"] for item in since["items"]} <= set(changed.retired) and len(since["items"]) == 500
    renames = await world.client.get("/api/v1/directory/changes", params={"kind": "renamed", "page_size": 500})
    by_code = {item["code"]: item for item in renames.json()["items"]}
    assert set(by_code) == set(changed.renamed)
    renamed = changed.renamed[0]
    assert by_code[renamed]["old"] == {"name": world.names[renamed]}
    assert by_code[renamed]["new"] == {"name": world.names_b[renamed]} and by_code[renamed]["as_of"] == str(DAY_B)
    nothing_yet = await world.client.get("/api/v1/directory/changes", params={"since": str(DAY_B)})
    assert nothing_yet.json()["total"] == 0
    bad = await world.client.get("/api/v1/directory/changes", params={"since": "last week"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


async def test_a_retired_branch_is_never_a_match_and_says_when_it_left(world: World) -> None:
    client = world.client
    matched_before = [code for code, answer in world.cached_before.items() if pays(answer, code)]
    assert len(matched_before) >= 0.7 * PER_KIND  # the branches were payable, and their answers cached
    for code in world.churned.retired[:PER_KIND]:
        before = world.cached_before[code]
        assert before["directory_as_of"] == str(DAY_A)
        answer = (await client.post("/api/v1/query", json={"query": world.names[code]})).json()
        assert answer["source"] != "cache" and answer["directory_as_of"] == str(DAY_B)
        assert not pays(answer, code), answer
        if pays(before, code):
            # The branch the words name has left: said so, with when, and never replaced by another code.
            assert (answer["verdict"], answer["reason"]) == ("none", "branch_retired"), answer
            assert answer["matches"][0]["code"] == code and answer["matches"][0]["retired_on"] == str(DAY_B)
            assert all(s["retired_on"] is None and s["code"] != code for s in answer["successors"])


async def test_codes_in_text_and_code_lookups_of_retired_codes(world: World) -> None:
    client = world.client
    code = world.churned.retired[0]
    looked_up = await client.get(f"/api/v1/branches/{code}")
    assert looked_up.status_code == 410
    error = looked_up.json()["error"]
    assert error["code"] == "retired_code" and error["branch"]["code"] == code
    assert error["branch"]["retired_on"] == str(DAY_B)
    for text in (code, f"{world.names[code]}（联行号：{code}）"):
        answer = (await client.post("/api/v1/query", json={"query": text})).json()
        assert (answer["verdict"], answer["reason"]) == ("none", "branch_retired"), answer
    alive = next(c for c in world.names_b if c not in set(world.churned.retired))
    assert (await client.get(f"/api/v1/branches/{alive}")).status_code == 200


async def test_batch_lines_follow_the_same_rule(world: World) -> None:
    retired = world.churned.retired[:PER_KIND]
    body = {"queries": [world.names[code] for code in retired]}
    results = (await world.client.post("/api/v1/query/batch", json=body)).json()["results"]
    for code, item in zip(retired, results, strict=True):
        result = item["result"]
        assert not pays(result, code)
        assert result["directory_as_of"] == str(DAY_B)


async def test_renamed_moved_and_new_branches_are_found_by_their_names_now(world: World) -> None:
    client = world.client
    for kind in ("renamed", "moved", "new"):
        codes = getattr(world.churned, kind)[:PER_KIND]
        answers = [(await client.post("/api/v1/query", json={"query": world.names_b[c]})).json() for c in codes]
        right = sum(
            a["verdict"] == "match" and a["matches"][0]["code"] == c for a, c in zip(answers, codes, strict=True)
        )
        assert right >= 0.8 * len(codes), (kind, right)
        wrong = [
            a for a, c in zip(answers, codes, strict=True) if a["verdict"] == "match" and a["matches"][0]["code"] != c
        ]
        assert not wrong, wrong


async def test_browse_lists_active_codes_unless_asked_for_retired_ones(world: World) -> None:
    code = world.churned.retired[0]
    name = world.names[code]
    active = (await world.client.get("/api/v1/branches", params={"q": name})).json()
    assert code not in [item["code"] for item in active["items"]]
    retired = (await world.client.get("/api/v1/branches", params={"q": name, "status": "retired"})).json()
    assert [item["code"] for item in retired["items"]] == [code] and retired["items"][0]["retired_on"] == str(DAY_B)


async def test_recheck_reports_the_rows_whose_code_left_or_changed(world: World) -> None:
    response = await world.client.post(f"/api/v1/jobs/{world.job_id}/recheck")
    assert response.status_code == 200
    report = response.json()
    retired = set(world.churned.retired[:PER_KIND])
    matched_then = {code for code, answer in world.cached_before.items() if pays(answer, code)}
    listed = {row["code"]: row for row in report["rows"]}
    assert matched_then <= set(listed) and report["directory_as_of"] == str(DAY_B)
    for code in matched_then:
        row = listed[code]
        assert row["changes"] == ["retired"] and row["retired_on"] == str(DAY_B)
        assert row["answered_as_of"] == str(DAY_A)
        assert row["now"]["verdict"] != "match" or row["now"]["code"] != code
    for code, row in listed.items():
        assert code in retired or "renamed" in row["changes"], row
    assert report["changed_rows"] == len(report["rows"])
    # The result file says which snapshot each row was answered from.
    result = (await world.client.get(f"/api/v1/jobs/{world.job_id}/result.csv?lang=en")).text
    assert f",{DAY_A}," in result and "directory_as_of" in result.splitlines()[0]


async def test_a_retired_code_that_returns_is_payable_again(embedded_postgres, snapshots) -> None:
    path_a, path_b, changed = snapshots
    url = await new_directory(embedded_postgres, path_a, DAY_A)
    await load(url, path_b, as_of=DAY_B)
    report = await load(url, path_a, as_of=date(2026, 12, 15))
    assert report.counts["returned"] == len(changed.retired) and report.counts["retired"] == len(changed.new)
    conn = await asyncpg.connect(url)
    try:
        code = changed.retired[0]
        assert await conn.fetchval("SELECT retired_on FROM branches WHERE code = $1", code) is None
        kinds = [r["kind"] for r in await conn.fetch(
            "SELECT kind FROM directory_changes WHERE code = $1 ORDER BY data_version", code)]  # fmt: skip
        assert kinds == ["new", "retired", "returned"]
        with pytest.raises(OlderSnapshotRefused):
            await load(url, path_b, as_of=DAY_B)
    finally:
        await conn.close()


async def test_a_snapshot_that_would_retire_too_much_is_refused_and_changes_nothing(
    embedded_postgres, snapshots, tmp_path
) -> None:
    path_a, _, _ = snapshots
    url = await new_directory(embedded_postgres, path_a, DAY_A)
    rows = read_rows(path_a)
    truncated = write_rows(tmp_path / "truncated.csv", rows[: len(rows) // 2])  # a download cut in half
    conn = await asyncpg.connect(url)
    try:
        before = await read_directory_state(conn)
        with pytest.raises(MassRetireRefused, match="--allow-mass-retire"):
            await load(url, truncated, as_of=DAY_B)
        assert await read_directory_state(conn) == before
        assert await conn.fetchval("SELECT count(*) FROM branches WHERE retired_on IS NOT NULL") == 0
        partial = await load(url, truncated, as_of=DAY_B, partial=True)  # an update of some codes retires none
        assert partial.counts["retired"] == 0  # type: ignore[attr-defined]
        forced = await load(url, truncated, as_of=DAY_B, allow_mass_retire=True)
        assert forced.counts["retired"] > 0.4 * len(rows)  # type: ignore[attr-defined]
    finally:
        await conn.close()


async def test_two_loads_at_once_are_serialised(embedded_postgres, snapshots) -> None:
    path_a, path_b, changed = snapshots
    url = await new_directory(embedded_postgres, path_a, DAY_A)
    first, second = await asyncio.gather(load(url, path_b, as_of=DAY_B), load(url, path_b, as_of=DAY_B))
    versions = sorted([first.data_version, second.data_version])  # type: ignore[attr-defined]
    assert versions[1] == versions[0] + 1
    retired_counts = sorted([first.counts["retired"], second.counts["retired"]])  # type: ignore[attr-defined]
    assert retired_counts == [0, len(changed.retired)]  # the second saw the first's result, not the old state


def test_db_diff_reports_the_same_changes_without_a_database(snapshots, capsys) -> None:
    path_a, path_b, changed = snapshots
    assert main(["db", "diff", str(path_a), str(path_b), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["retired"] == len(changed.retired) and report["counts"]["new"] == len(changed.new)
    assert report["counts"]["renamed"] == len(changed.renamed) and report["counts"]["moved"] == len(changed.moved)
    assert main(["db", "diff", str(path_a), str(path_b), "--limit", "3"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("new=") and "more (--limit" in text
