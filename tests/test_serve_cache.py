"""The shared result cache through the real Serve application: Ray, Serve's proxy, PostgreSQL and Valkey.

Two tenants with their own API keys ask lines that share their words and differ in the code they carry,
in both orders: each line gets its own answer, whoever asked what first. The application is rules only
(no model replicas, no job workers), so the module deploys in seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serve_app.db.pool import connect_admin, create_pool
from serve_app.directory.churn import read_rows, write_rows
from serve_app.directory.loader import load_directory
from serve_app.directory.records import demo_cnaps_path
from serve_app.ops.embedded import EmbeddedRedis, free_port
from serve_app.service.tenants import KeyStore
from tests.conftest import loaded_database
from tests.serve_harness import (
    SEED_CODE,
    deploy,
    headless_chromium,
    result_cache_entries,
    running_valkey,
    start_ray_serve,
    stop_ray_serve,
)

pytestmark = [pytest.mark.serve, pytest.mark.slow]

APP_ARGS = {
    "ingress": {"auth": "keys", "resources": {"num_cpus": 0.1, "autoscaling": {"min_replicas": 1, "max_replicas": 1}}},
    "extractor": {"resources": {"num_cpus": 0.1, "autoscaling": {"min_replicas": 1, "max_replicas": 1}}},
    "model": None,
    "jobs": None,
}
#: ABC's 成都草池支行 and the code of its 成都空港新城支行 (another branch of the same bank).
CAOCHI, KONGGANG = "103651074123", "103651074220"


async def _tenant_keys(database_url: str) -> tuple[str, str]:
    pool = await create_pool(database_url)
    try:
        keys = KeyStore(pool)
        return (await keys.create("tenant-a", [], None))[0], (await keys.create("tenant-b", [], None))[0]
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with running_valkey(tmp_path_factory.mktemp("cache-valkey")) as server:
        yield server


@pytest.fixture(scope="module")
def app(embedded_postgres, valkey: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The rules-only application in keys mode; yields its base URL and two tenants' keys."""
    database_url = asyncio.run(loaded_database(embedded_postgres, "cache"))
    key_a, key_b = asyncio.run(_tenant_keys(database_url))
    env = {
        "SERVE_APP_DATABASE_URL": database_url,
        "SERVE_APP_REDIS_URL": valkey.url,
        "SERVE_APP_HOME": str(tmp_path_factory.mktemp("cache-home")),
        "SERVE_APP_ADMIN_TOKEN": "test-admin-token-0123456789",
    }
    port = free_port()
    start_ray_serve(env, port)
    try:
        deploy(APP_ARGS, [], name="cache")
        yield {"base": f"http://127.0.0.1:{port}", "a": key_a, "b": key_b, "database_url": database_url}
    finally:
        stop_ray_serve()


def ask(app: dict, tenant: str, text: str) -> dict:
    response = httpx.post(
        f"{app['base']}/api/v1/query", json={"query": text}, headers={"x-api-key": app[tenant]}, timeout=60
    )
    assert response.status_code == 200, response.text
    return response.json()


def verdict(answer: dict) -> tuple[str, str, list[str]]:
    return answer["verdict"], answer["reason"], [match["code"] for match in answer["matches"]]


def test_a_code_in_the_text_and_the_plain_name_never_share_an_answer(app: dict, valkey: EmbeddedRedis) -> None:
    name = "中国农业银行成都草池支行"
    with_code = f"{name}（{KONGGANG}）"
    plain = ("match", "unique_fit", [CAOCHI])
    conflict = ("ambiguous", "code_conflict", [KONGGANG, CAOCHI])

    entries = result_cache_entries(valkey.url)
    # The line with a code first, then the plain name; tenant A, then tenant B the other way round.
    first = ask(app, "a", with_code)
    assert (verdict(first), first["source"]) == (conflict, "rules")
    second = ask(app, "a", name)
    assert (verdict(second), second["source"]) == (plain, "rules")
    assert verdict(ask(app, "b", name)) == plain
    assert verdict(ask(app, "b", with_code)) == conflict
    assert ask(app, "b", with_code)["source"] == "cache"  # the cache is in play, and keeps them apart
    assert result_cache_entries(valkey.url) == entries + 2  # one entry each in Valkey, shared by the tenants


def test_the_plain_name_first_does_not_decide_the_lines_that_carry_codes(app: dict) -> None:
    name = "华夏银行江油西山支行"
    wrong_digit = SEED_CODE[:-1] + str((int(SEED_CODE[-1]) + 1) % 10)
    assert verdict(ask(app, "b", name)) == ("match", "unique_fit", [SEED_CODE])
    assert verdict(ask(app, "a", name))[0:2] == ("match", "unique_fit")
    assert verdict(ask(app, "a", f"{name}（{wrong_digit}）")) == ("none", "invalid_code", [])
    other_bank = ask(app, "b", f"{name}（{CAOCHI}）")  # ABC's code beside 华夏银行's words
    assert verdict(other_bank)[0:2] == ("ambiguous", "code_conflict") and other_bank["matches"][0]["code"] == CAOCHI
    own = ask(app, "a", f"{name}（联行号：{SEED_CODE}）")
    assert verdict(own) == ("match", "code_lookup", [SEED_CODE])
    # And in the other order: the line with a conflicting code first, the plain name after it.
    minsheng = "中国民生银行北京中关村支行"
    assert verdict(ask(app, "a", f"{minsheng}（{SEED_CODE}）"))[0:2] == ("ambiguous", "code_conflict")
    assert verdict(ask(app, "b", minsheng))[0:2] == ("none", "no_branch_fits")


def test_an_account_number_in_a_pasted_instruction_is_not_a_code(app: dict) -> None:
    answer = ask(app, "a", "账号：455765432109 开户行：华夏银行江油西山支行")
    assert verdict(answer) == ("match", "unique_fit", [SEED_CODE])


async def _load(database_url: str, snapshot: Path) -> int:
    conn = await connect_admin(database_url)
    try:
        return (await load_directory(conn, snapshot)).data_version
    finally:
        await conn.close()


def test_a_cached_match_is_not_served_once_a_load_retires_its_code(app: dict, tmp_path: Path) -> None:
    """The answer is cached in Valkey and in the ingress; the load that retires its code is followed at once
    (the load's notification), not at the next poll: the very next request is answered from the new snapshot."""
    name, code = "中国工商银行北京东铁匠营支行", "102100000048"
    rows = read_rows(demo_cnaps_path())
    without = write_rows(tmp_path / "b.csv", [row for row in rows if row["BankCode"] != code])
    before = ask(app, "a", name)
    assert verdict(before) == ("match", "unique_fit", [code])
    assert ask(app, "a", name)["source"] == "cache"
    try:
        version = asyncio.run(_load(app["database_url"], without))
        after = ask(app, "a", name)  # no wait: the first request after the load
        assert verdict(after) == ("none", "branch_retired", [code]) and after["source"] == "rules"
        assert after["data_version"] == version and after["matches"][0]["retired_on"] == after["directory_as_of"]
        looked_up = httpx.get(f"{app['base']}/api/v1/branches/{code}", headers={"x-api-key": app["b"]}, timeout=60)
        assert looked_up.status_code == 410 and looked_up.json()["error"]["code"] == "retired_code"
        page_shows_the_retired_branch(app, name, code, after["directory_as_of"])
    finally:
        asyncio.run(_load(app["database_url"], demo_cnaps_path()))  # the code returns: other tests see A
    assert verdict(ask(app, "b", name)) == ("match", "unique_fit", [code])


def page_shows_the_retired_branch(app: dict, name: str, code: str, as_of: str) -> None:
    """The page in a real browser (in Chinese): the directory's date, the answer marked retired, the change
    listed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chromium() as driver:
        wait = WebDriverWait(driver, 60)
        driver.get(f"{app['base']}/")
        driver.execute_script("sessionStorage.setItem('serve-app-key', arguments[0])", app["a"])  # as typed before
        driver.refresh()
        wait.until(lambda d: d.find_element(By.ID, "directory-as-of").text.startswith(f"目录截至 {as_of}"))
        wait.until(lambda d: code in d.find_element(By.ID, "changes").text)
        assert "撤销" in driver.find_element(By.ID, "changes").text
        driver.find_element(By.ID, "search").send_keys(name)
        wait.until(lambda d: code in d.find_element(By.ID, "matches").text)
        verdict = driver.find_element(By.ID, "verdict")
        assert (verdict.text, verdict.get_attribute("data-verdict")) == ("目录中无此网点", "none")
        assert f"已撤销 {as_of}" in driver.find_element(By.ID, "matches").text
        assert driver.find_element(By.ID, "successors-box").is_displayed()
