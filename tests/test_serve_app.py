"""The Ray Serve application, for real: Ray, Serve's proxy, PostgreSQL and Valkey, over HTTP.

One application is deployed for the module (HFEngine on the demo model, two adapters per replica) on its
own database and Redis; tests poll for conditions instead of sleeping.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from serve_app.ops.embedded import EmbeddedRedis, free_port
from tests.conftest import create_database
from tests.serve_harness import (
    HOT_QUERIES,
    SEED_CODE,
    deploy,
    headless_chromium,
    post_query,
    prepare_app_database,
    running_valkey,
    scrape,
    serve_details,
    start_ray_serve,
    stop_ray_serve,
    wait_for,
)

pytestmark = [pytest.mark.serve, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]

ADMIN = {"authorization": "Bearer test-admin-token-0123456789"}
#: Debian's browser and its driver (scripts/install puts them there).
APP_ARGS = {
    "ingress": {"resources": {"num_cpus": 0.1, "autoscaling": {"min_replicas": 1, "max_replicas": 1}}},
    "extractor": {"resources": {"num_cpus": 0.1, "autoscaling": {"min_replicas": 1, "max_replicas": 1}}},
    "model": {
        "max_adapters_per_replica": 2,
        "preload_adapters": ["job_22"],
        "resources": {
            "num_cpus": 0.1,
            "cpu_threads": 2,
            "max_ongoing_requests": 2,
            "max_queued_requests": 2,
            "autoscaling": {"min_replicas": 1, "max_replicas": 1},
        },
        "tunables": {"max_batch_size": 2, "max_new_tokens": 48},
    },
    "jobs": {"resources": {"num_cpus": 0.1}, "tunables": {"chunk_rows": 100}},
}
INGRESS_TUNABLES = {"rate_limit_per_s": 200, "rate_limit_burst": 400}


#: Present from the first deploy: adding an autoscaling override later changes the app's code version.
BASE_AUTOSCALING = {"min_replicas": 1, "max_replicas": 1}


def deploy_test_app(ingress_tunables: dict, ingress_autoscaling: dict = BASE_AUTOSCALING) -> None:
    deploy(
        APP_ARGS,
        [
            {"name": "Ingress", "user_config": ingress_tunables, "autoscaling_config": ingress_autoscaling},
            {"name": "ModelServer", "user_config": {"max_batch_size": 2, "max_new_tokens": 48}},
        ],
    )


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with running_valkey(tmp_path_factory.mktemp("serve-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def serve_home(embedded_postgres, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The application's database (the sample directory, the demo model's adapters registered) and home."""
    home = tmp_path_factory.mktemp("serve-home")
    database_url = asyncio.run(create_database(embedded_postgres, "serve"))
    asyncio.run(prepare_app_database(database_url, home))
    return database_url, home


@pytest.fixture(scope="module")
def serve_app(serve_home: tuple[str, Path], redis_server, metrics_port: int) -> Iterator[str]:
    """Deploy the application; yield its base URL."""
    database_url, home = serve_home
    env = {
        "SERVE_APP_DATABASE_URL": database_url,
        "SERVE_APP_REDIS_URL": redis_server.url,
        "SERVE_APP_HOME": str(home),
        "SERVE_APP_ADMIN_TOKEN": "test-admin-token-0123456789",
    }
    port = free_port()
    start_ray_serve(env, port, metrics_port)
    deploy_test_app(INGRESS_TUNABLES)
    yield f"http://127.0.0.1:{port}"
    stop_ray_serve()


def model_stats(base: str) -> dict:
    """The model replica's stats from the board (a 503 while Redis's pooled connections recover from a
    restart by an earlier test is waited out; any other status, or a 503 that lasts, fails with its body)."""
    deadline = time.monotonic() + 30
    while True:
        response = httpx.get(f"{base}/api/v1/query/model-cache-stats", headers=ADMIN, timeout=10)
        if response.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert response.status_code == 200, response.text
    replicas = response.json()["replicas"]
    return replicas[0] if replicas else {}


def test_seed_query_then_cache(serve_app: str) -> None:
    assert httpx.get(f"{serve_app}/readyz", timeout=10).status_code == 200
    top_k = random.randint(6, 50)  # a cache entry of this run's own, whatever other tests asked
    first = post_query(serve_app, "华夏银行江油西山支行", top_k=top_k)
    assert first.status_code == 200
    assert first.json()["matches"][0]["code"] == SEED_CODE
    assert first.json()["source"] == "rules"
    second = post_query(serve_app, "华夏银行江油西山支行", top_k=top_k)
    assert second.json()["source"] == "cache"
    assert second.json()["matches"] == first.json()["matches"]


def statement_csv(rows: int) -> bytes:
    lines = ["流水号,对方行名,金额"] + [f"{n},{HOT_QUERIES[n % len(HOT_QUERIES)]},{n}.00" for n in range(rows)]
    return ("\n".join(lines) + "\n").encode("gbk")


def job_status(base: str, job_id: str) -> dict:
    return httpx.get(f"{base}/api/v1/jobs/{job_id}", timeout=10).json()


def test_a_bulk_job_through_serve_survives_its_worker_replica_being_killed(serve_app: str) -> None:
    import ray

    rows = 4_000
    created = httpx.post(f"{serve_app}/api/v1/jobs?filename=big.csv", content=statement_csv(rows), timeout=60)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    wait_for(lambda: job_status(serve_app, job_id)["done_rows"] > 0, timeout_s=60, interval_s=0.05)
    worker = next(a for a in ray.util.list_named_actors(all_namespaces=True) if "JobWorker" in a["name"])
    ray.kill(ray.get_actor(worker["name"], namespace=worker["namespace"]), no_restart=True)
    at_kill = job_status(serve_app, job_id)
    assert at_kill["state"] == "running" and at_kill["done_rows"] < rows, "the job finished before the kill"
    done = wait_for(lambda: (s := job_status(serve_app, job_id))["state"] == "done" and s, timeout_s=180)
    assert done["done_rows"] == rows == sum(done["counts"].values())  # Serve's new replica finished it
    result = httpx.get(f"{serve_app}/api/v1/jobs/{job_id}/result.csv", timeout=60)
    table = list(csv.reader(io.StringIO(result.content.decode("utf-8-sig"))))
    assert [row[0] for row in table[1:]] == [str(n) for n in range(rows)]
    code = table[0].index("联行号")
    assert all(row[code] == SEED_CODE for row in table[1:] if row[1] == "华夏银行江油西山支行")


@pytest.mark.browser
def test_the_web_page_in_a_real_browser(serve_app: str, tmp_path: Path) -> None:
    """Debian's Chromium, headless, driven by Selenium: search, look a code up, browse, then reconcile a file and
    download the result — in Chinese, the page's default language."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with headless_chromium(downloads) as driver:
        wait = WebDriverWait(driver, 60)
        driver.get(f"{serve_app}/")
        driver.find_element(By.ID, "search").send_keys("华夏银行江油西山支行")
        wait.until(lambda d: SEED_CODE in d.find_element(By.ID, "matches").text)
        verdict = driver.find_element(By.ID, "verdict")
        assert (verdict.text, verdict.get_attribute("data-verdict")) == ("可付款", "match")
        assert "银行：一致" in driver.find_element(By.ID, "matches").text
        use = driver.find_element(By.CSS_SELECTOR, "#matches .use-code")  # a candidate's code, ready to copy
        use.click()
        wait.until(lambda d: SEED_CODE in d.find_element(By.CSS_SELECTOR, "#matches .use-code").text)
        search = driver.find_element(By.ID, "search")
        assert not driver.find_element(By.ID, "read-as").is_displayed()  # one name: read as written
        # A row pasted from an Excel export (cells joined by tabs, as a paste inserts them): the payee's city
        # is not the branch's, and the page says which words it read.
        row = "2026-11-03\t转账\t成都市锦江区某某贸易有限公司\t6222021234567890\t华夏银行江油西山支行\t5,000.00"
        search.clear()
        driver.execute_script(
            "arguments[0].focus(); document.execCommand('insertText', false, arguments[1]);", search, row
        )
        wait.until(lambda d: d.find_element(By.ID, "read-as").is_displayed())
        assert driver.find_element(By.ID, "read-as").text == "按此文字查询：华夏银行江油西山支行"
        wait.until(lambda d: d.find_element(By.ID, "verdict").get_attribute("data-verdict") == "match")
        assert SEED_CODE in driver.find_element(By.ID, "matches").text
        search.clear()
        search.send_keys("工行徐州经济开发区支行")  # none: its namesakes in other cities are shown, not offered
        wait.until(lambda d: d.find_element(By.ID, "reason").get_attribute("data-reason") == "no_branch_in_place")
        assert driver.find_element(By.ID, "verdict").text == "目录中无此网点"
        assert "不在所写的地点" in driver.find_element(By.ID, "reason").text
        assert driver.find_elements(By.CSS_SELECTOR, "#matches .use-code") == []
        search.clear()
        search.send_keys("华夏银行江油西山支行")
        wait.until(lambda d: d.find_element(By.ID, "verdict").get_attribute("data-verdict") == "match")
        driver.find_element(By.ID, "code").send_keys(SEED_CODE + "\n")
        wait.until(lambda d: "华夏银行股份有限公司江油西山支行" in d.find_element(By.ID, "code-result").text)
        driver.find_element(By.ID, "browse-bank").send_keys("华夏银行")
        driver.find_element(By.ID, "browse-q").send_keys("江油\n")
        wait.until(lambda d: SEED_CODE in d.find_element(By.ID, "browse-items").text)
        assert driver.find_element(By.ID, "browse-total").text == "共 1 个网点，第 1 页"

        upload = tmp_path / "对账单.csv"
        upload.write_bytes(statement_csv(300))
        driver.find_element(By.ID, "upload-file").send_keys(str(upload))
        driver.find_element(By.ID, "upload-button").click()
        wait.until(lambda d: d.find_element(By.ID, "job-progress").text.startswith("100 %"))
        assert "300 / 300 行" in driver.find_element(By.ID, "job-progress").text
        assert driver.find_element(By.ID, "job-state").text.startswith("完成")
        wait.until(lambda d: "对账单.csv" in d.find_element(By.ID, "recent-jobs").text)  # listed, to reopen later
        screenshot = os.environ.get("SERVE_APP_SCREENSHOT")
        if screenshot:
            driver.save_screenshot(screenshot)
        driver.find_element(By.ID, "download-csv").click()
        saved = wait.until(lambda d: [p for p in downloads.glob("*.csv") if p.stat().st_size > 0])
        assert driver.find_element(By.ID, "directory-as-of").text.startswith("目录截至 20")
    table = list(csv.reader(io.StringIO(saved[0].read_text(encoding="utf-8-sig"))))
    assert saved[0].name == "对账单.result.csv" and len(table) == 301
    assert [row[0] for row in table[1:]] == [str(n) for n in range(300)]


@pytest.mark.browser
def test_bank_exports_through_the_page(serve_app: str, tmp_path: Path) -> None:
    """The eight export shapes of ``tests/export_shapes.py``, each uploaded on the page as a clerk would: the
    job finishes with its non-transactions skipped, and the page says where it found the header."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from serve_app.jobs.files import read_table
    from tests.export_shapes import shapes

    with headless_chromium() as driver:
        wait = WebDriverWait(driver, 90)
        driver.get(f"{serve_app}/")
        for shape in shapes():
            path = tmp_path / shape.filename
            path.write_bytes(shape.data)
            driver.find_element(By.ID, "upload-file").send_keys(str(path))
            driver.find_element(By.ID, "upload-button").click()
            wait.until(lambda d, name=shape.filename: d.find_element(By.ID, "job-file").text.startswith(name))
            wait.until(lambda d: d.find_element(By.ID, "job-state").text.startswith("完成"))
            counts = driver.find_element(By.ID, "job-counts").text
            assert f"跳过 {shape.not_transactions}" in counts and "错误 0" in counts, (shape.name, counts)
            header_line = read_table(shape.data, max_rows=1000).header_line
            said = driver.find_element(By.ID, "job-file").text
            assert (f"在第 {header_line} 行找到表头" in said) == (header_line > 1), (shape.name, said)


@pytest.mark.browser
def test_a_clerk_decides_unsure_rows_on_the_page_and_the_next_answer_follows(serve_app: str, tmp_path: Path) -> None:
    """Upload a statement, decide its three unsure rows with the keyboard (1: the first candidate, 0: no such
    branch), download the result with the decisions; the decided text is then answered ``confirmed``, until
    the confirmation is deleted on the page. (Another tenant never sees it: ``tests/test_review.py``.)"""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    several = "建行人民路支行"
    texts = ["华夏银行江油西山支行", several, "中国工商银行", "工行徐州经济开发区支行"]
    upload = tmp_path / "十一月对账单.csv"
    upload.write_text("序号,对方开户行,金额\n" + "".join(f"{n},{t},{n}.00\n" for n, t in enumerate(texts, 1)), "gbk")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    try:
        with headless_chromium(downloads) as driver:
            wait = WebDriverWait(driver, 60)
            driver.get(f"{serve_app}/")
            driver.find_element(By.ID, "upload-file").send_keys(str(upload))
            driver.find_element(By.ID, "upload-button").click()
            wait.until(lambda d: d.find_element(By.ID, "review-text").text == several)
            assert "第 2 行" in driver.find_element(By.ID, "review-number").text
            first = driver.find_element(By.CSS_SELECTOR, "#review-candidates button").text
            chosen = re.search(r"\d{12}", first).group(0)
            driver.execute_script("document.activeElement.blur()")
            for key, decided in (("1", 1), ("0", 2), ("0", 3)):
                ActionChains(driver).send_keys(key).perform()
                wait.until(lambda d, n=decided: f"已决定 {n} 行" in d.find_element(By.ID, "review-progress").text)
            wait.until(lambda d: d.find_element(By.ID, "review-done").is_displayed())
            driver.find_element(By.ID, "download-csv").click()
            saved = wait.until(lambda d: [p for p in downloads.glob("*.csv") if p.stat().st_size > 0])
            table = list(csv.reader(io.StringIO(saved[0].read_text(encoding="utf-8-sig"))))
            decisions = [row[table[0].index("人工决定")] for row in table[1:]]
            assert decisions == ["", chosen, "none", "none"]

            search = driver.find_element(By.ID, "search")
            search.send_keys(several)
            wait.until(lambda d: d.find_element(By.ID, "reason").get_attribute("data-reason") == "confirmed")
            assert driver.find_element(By.ID, "verdict").text == "可付款" and chosen in driver.find_element(
                By.ID, "matches").text  # fmt: skip
            assert "确认" in driver.find_element(By.ID, "confidence").text
            rows = driver.find_elements(By.CSS_SELECTOR, "#confirmations tr")
            mine = next(row for row in rows if row.text.startswith(several))
            mine.find_element(By.TAG_NAME, "button").click()
            wait.until(lambda d: several not in d.find_element(By.ID, "confirmations").text)
            search.clear()
            search.send_keys(several)
            wait.until(lambda d: d.find_element(By.ID, "reason").get_attribute("data-reason") == "several_fit")
    finally:  # the open tenant is every test's: leave it without confirmations
        for item in httpx.get(f"{serve_app}/api/v1/confirmations?page_size=500", timeout=10).json()["items"]:
            httpx.delete(f"{serve_app}/api/v1/confirmations/{item['id']}", timeout=10)


@pytest.mark.browser
def test_the_page_speaks_chinese_and_switches_to_english(serve_app: str) -> None:
    """Every word the page writes has a Chinese and an English form; Chinese is the default, the switch gives
    English and is remembered; the API's codes stay readable in ``data-*`` attributes either way."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chromium() as driver:
        wait = WebDriverWait(driver, 60)
        driver.get(f"{serve_app}/")
        zh, en = driver.execute_script("return [Object.keys(MESSAGES.zh).sort(), Object.keys(MESSAGES.en).sort()]")
        assert zh == en
        static = driver.execute_script(
            "return [...document.querySelectorAll('[data-i18n]')].map(e => e.textContent)"
            ".concat([...document.querySelectorAll('[data-i18n-placeholder]')].map(e => e.placeholder))"
        )
        assert static and all(re.search(r"[\u4e00-\u9fff]", text) for text in static if text != "English"), static
        driver.find_element(By.ID, "switch-language").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Bank-branch lookup")
        driver.find_element(By.ID, "search").send_keys("华夏银行江油西山支行")
        wait.until(lambda d: d.find_element(By.ID, "verdict").text == "Payable")
        assert driver.find_element(By.ID, "reason").text == "one branch of the bank read fits, surely enough"
        assert "bank: exact" in driver.find_element(By.ID, "matches").text
        driver.get(f"{serve_app}/")  # the choice is remembered
        assert driver.find_element(By.TAG_NAME, "h1").text == "Bank-branch lookup"
        driver.find_element(By.ID, "switch-language").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "银行网点（联行号）查询")


def documented_examples() -> list[str]:
    """The commands the docs show against a local service: README's ``$ curl`` lines and docs/bulk.md's
    ``bash`` blocks."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    examples = [line[2:] for line in readme.splitlines() if line.startswith("$ curl ")]
    bulk = (ROOT / "docs" / "bulk.md").read_text(encoding="utf-8")
    return examples + [block for block in re.findall(r"```bash\n(.*?)```", bulk, re.S) if "localhost:8000" in block]


def test_every_curl_example_in_the_docs_runs_as_written(serve_app: str, tmp_path: Path) -> None:
    """Each example, its host's port aside, in bash with ``set -euo pipefail`` and curl failing on any
    HTTP error (``fail-with-body``): the docs' commands work on the service as it is."""
    port = serve_app.rsplit(":", 1)[1]
    (tmp_path / "对账单.csv").write_bytes(statement_csv(20))
    (tmp_path / ".curlrc").write_text("fail-with-body\n")
    examples = documented_examples()
    assert len(examples) >= 2
    for example in examples:
        script = example.replace("localhost:8000", f"localhost:{port}")
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                              env=os.environ | {"CURL_HOME": str(tmp_path)}, timeout=120)  # fmt: skip
        assert done.returncode == 0, (example, done.stdout[-600:], done.stderr[-600:])
    assert (tmp_path / "对账单.result.xlsx").stat().st_size > 0


def clear_model_cache(base: str) -> dict:
    """``POST clear-model-cache``, then wait until the model replica holds no adapter; its stats then."""
    cleared = httpx.post(f"{base}/api/v1/query/clear-model-cache", headers=ADMIN, timeout=10)
    assert cleared.status_code == 200 and cleared.json()["cleared"] is True, cleared.text
    return wait_for(lambda: (s := model_stats(base)) and s["loaded_adapters"] == [] and s, timeout_s=30)


def test_clear_model_cache_unloads_every_adapter(serve_app: str) -> None:
    run = uuid.uuid4().hex[:6]
    assert post_query(serve_app, f"建行人民路支行{run}", model="job_23").status_code == 200
    wait_for(lambda: any(ref.startswith("job_23@") for ref in model_stats(serve_app)["loaded_adapters"]))
    cleared = clear_model_cache(serve_app)
    assert post_query(serve_app, f"建行人民路支行{run}a", model="job_23").status_code == 200
    reloaded = wait_for(lambda: (s := model_stats(serve_app)) and s["loads"] > cleared["loads"] and s)
    assert [ref.split("@")[0] for ref in reloaded["loaded_adapters"]] == ["job_23"]


def test_adapters_are_served_loaded_once_and_evicted_beyond_k(serve_app: str) -> None:
    before = clear_model_cache(serve_app)
    run = uuid.uuid4().hex[:6]
    for i, adapter in enumerate(["job_22", "job_23", "job_22", "job_23", "job_24"]):
        response = post_query(serve_app, f"工行徐州经济开发区支行{run}{i}", model=adapter)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == adapter
    target = before["generated_requests"] + 5
    stats = wait_for(lambda: (s := model_stats(serve_app)) and s["generated_requests"] >= target and s)
    # job_22 and job_23 loaded once each and then hit; job_24 pushed the colder (job_22) out (K = 2).
    assert stats["base_loads"] == 1
    assert stats["cpu_threads"] == 2  # resources.cpu_threads, not the one thread Ray gives num_cpus 0.1
    assert (stats["loads"] - before["loads"], stats["evictions"] - before["evictions"]) == (3, 1)
    assert sorted(ref.split("@")[0] for ref in stats["loaded_adapters"]) == ["job_23", "job_24"]
    assert post_query(serve_app, "工行", model="job_99").status_code == 404


def test_a_training_run_in_a_ray_actor_registers_a_revision_that_serves(serve_app: str) -> None:
    """POST …/training on the running application: a detached Ray actor (never the ingress or a serving model
    replica) trains job_24 for a few steps, writing its progress to the run; the gate passes (tiny random
    models: no worse than the revision serving or the rules alone), and the new revision is live without a
    redeploy: the next query naming job_24 loads it."""
    started = httpx.post(f"{serve_app}/api/v1/adapters/job_24/training", json={"steps": 3}, timeout=30)
    assert started.status_code == 202, started.text
    location = serve_app + started.headers["location"]

    def ended() -> dict | None:
        run = httpx.get(location, timeout=10).json()
        return run if run["state"] in ("registered", "rejected", "failed") else None

    run = wait_for(ended, timeout_s=300, interval_s=1)
    assert run["state"] == "registered" and run["step"] == 3, run
    assert run["report"]["replaces"].startswith("job_24@") and run["report"]["accepted"]
    response = post_query(serve_app, f"华夏银行江油西山支行{uuid.uuid4().hex[:6]}", model="job_24")
    assert response.status_code == 200 and response.json()["model"] == "job_24"
    wait_for(lambda: f"job_24@{run['revision']}" in model_stats(serve_app)["loaded_adapters"])


@pytest.mark.browser
def test_the_page_starts_a_training_run_and_shows_its_gate(serve_app: str) -> None:
    """On the page, in Chinese: name the adapter, start a short run, and follow it to its end, with the gate's
    measurements of the new revision, the serving one and the rules alone — also past a look at the runs
    that fails (the service busy or restarting): the page keeps following the run."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chromium() as driver:
        wait = WebDriverWait(driver, 300, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
        driver.get(f"{serve_app}/")
        # The first look at the runs after the start fails, as a dropped connection does.
        driver.execute_script(
            """const realFetch = window.fetch; let failures = 1;
            window.fetch = (path, options) => String(path).endsWith("/training") && !(options && options.method)
              && failures-- > 0 ? Promise.reject(new TypeError("connection dropped")) : realFetch(path, options);"""
        )
        driver.find_element(By.ID, "training-adapter").send_keys("job_24")
        steps = driver.find_element(By.ID, "training-steps")
        steps.clear()
        steps.send_keys("2")
        driver.find_element(By.ID, "training-start").click()
        wait.until(lambda d: d.find_element(By.ID, "training-error").is_displayed())
        newest = (By.CSS_SELECTOR, "#training-runs tr:first-child")
        ended = ("registered", "rejected", "failed")
        wait.until(lambda d: d.find_element(*newest).get_attribute("data-state") in ended)
        row = driver.find_element(*newest)
        text = row.text
        assert row.get_attribute("data-state") == "registered", text
        assert "已启用" in text and "新版本" in text and "现有版本" in text and "纯规则" in text, text
        assert not driver.find_element(By.ID, "training-error").is_displayed()


def test_adapter_churn_through_serve_never_fails(serve_app: str) -> None:
    """Three adapters, two slots, two requests at a time: Serve's multiplexer evicts on nearly every
    request while another may be using the adapter it evicts. Every request is answered by its adapter."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    before = model_stats(serve_app)
    order = ["job_22", "job_23", "job_24"] * 8
    random.Random(12).shuffle(order)
    run = uuid.uuid4().hex[:6]  # fresh queries: nothing answered from a cache
    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(
            pool.map(lambda item: post_query(serve_app, f"工行徐州{run}支行{item[0]}", model=item[1]), enumerate(order))
        )
    assert [r.status_code for r in responses] == [200] * len(order), [r.text for r in responses if r.status_code != 200]
    assert [r.json()["model"] for r in responses] == order
    after = wait_for(
        lambda: (
            (s := model_stats(serve_app)) and s["generated_requests"] >= before["generated_requests"] + len(order) and s
        )
    )
    assert after["evictions"] > before["evictions"] and after["failures"] == before["failures"]
    assert len(after["loaded_adapters"]) <= 2


def test_bad_input_is_a_clear_4xx(serve_app: str) -> None:
    cases = [
        ({"query": ""}, 422),
        ({"query": "x" * 600}, 422),
        ({"query": "华夏银行", "top_k": 0}, 422),
        ({"query": 5}, 422),
        ({"nope": 1}, 422),
    ]
    for body, status in cases:
        response = httpx.post(f"{serve_app}/api/v1/query", json=body, timeout=10)
        assert response.status_code == status, body
        assert set(response.json()["error"]) == {"code", "message"}
    raw = httpx.post(f"{serve_app}/api/v1/query", content=b"\xff\xfe{", timeout=10)
    assert raw.status_code == 400
    assert httpx.get(f"{serve_app}/api/v1/adapters", timeout=10).status_code == 401


def test_locust_file_runs_headless_without_failures(serve_app: str, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(root / "load_tests" / "locustfile.py"), "--headless",
         "--host", serve_app, "-u", "2", "-r", "2", "-t", "6s", "--csv", str(tmp_path / "smoke"), "--only-summary"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    with (tmp_path / "smoke_stats.csv").open() as handle:
        total = next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")
    assert int(total["Request Count"]) > 10
    assert int(total["Failure Count"]) == 0, result.stderr[-2000:]


def test_overload_returns_503_json_not_a_hang(serve_app: str) -> None:
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            requests = [
                client.post(
                    f"{serve_app}/api/v1/query",
                    json={"query": f"建行人民路支行{uuid.uuid4().hex[:6]}", "model": "job_23"},
                )
                for _ in range(24)
            ]
            return await asyncio.gather(*requests)

    started = time.monotonic()
    responses = asyncio.run(burst())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) >= 1 and statuses.count(200) >= 1
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.json()["error"]["code"] == "overloaded"
    assert rejected.headers["retry-after"] == "1"
    assert time.monotonic() - started < 60


def ingress_stats(base: str) -> dict:
    return httpx.get(f"{base}/api/v1/stats", headers=ADMIN, timeout=10).json()


@contextmanager
def ingress_tunables(base: str, tunables: dict, autoscaling: dict = BASE_AUTOSCALING) -> Iterator[dict]:
    """The module's application with other ingress tunables (and autoscaling) until the block ends; then
    as it was, so no other test sees them. Yields the ingress's stats once they apply."""
    deploy_test_app(tunables, autoscaling)
    try:
        yield wait_for(lambda: (s := ingress_stats(base)) and s["tunables"] | tunables == s["tunables"] and s)
    finally:
        deploy_test_app(INGRESS_TUNABLES)
        wait_for(lambda: ingress_stats(base)["tunables"] | INGRESS_TUNABLES == ingress_stats(base)["tunables"])


def test_user_config_is_applied_without_restarting_replicas(serve_app: str) -> None:
    before = ingress_stats(serve_app)
    assert before["tunables"]["rate_limit_burst"] == INGRESS_TUNABLES["rate_limit_burst"]
    with ingress_tunables(serve_app, {"rate_limit_per_s": 1, "rate_limit_burst": 5}) as after:
        assert after["replica"] == before["replica"]
        assert after["tunables"]["rate_limit_per_s"] == 1


def test_autoscaling_change_is_applied_in_place(serve_app: str) -> None:
    before = ingress_stats(serve_app)
    autoscaling = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 5}
    with ingress_tunables(serve_app, INGRESS_TUNABLES, autoscaling):
        details = serve_details()
        ingress = details["applications"]["test"]["deployments"]["Ingress"]
        config = ingress["deployment_config"]
        assert config["autoscaling_config"]["max_replicas"] == 2
        assert config["autoscaling_config"]["target_ongoing_requests"] == 5
        assert ingress_stats(serve_app)["replica"] == before["replica"]


def test_rate_limit_rejects_a_burst_with_429(serve_app: str) -> None:
    # Open mode limits a client by its address: this one sends from a loopback address of its own.
    address = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"

    async def burst() -> list[httpx.Response]:
        transport = httpx.AsyncHTTPTransport(local_address=address)
        async with httpx.AsyncClient(timeout=30, transport=transport) as client:
            send = [client.post(f"{serve_app}/api/v1/query", json={"query": "华夏银行江油西山支行"}) for _ in range(15)]
            return await asyncio.gather(*send)

    with ingress_tunables(serve_app, {"rate_limit_per_s": 1, "rate_limit_burst": 5}):
        responses = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    # Burst 5 at 1 token/s: five pass (a sixth if a token refills during the burst), the rest are told to wait.
    assert 5 <= codes.count(200) <= 6 and codes.count(429) == 15 - codes.count(200), codes
    rejected = next(r for r in responses if r.status_code == 429)
    assert rejected.json()["error"]["code"] == "rate_limited" and int(rejected.headers["retry-after"]) >= 1


def test_redis_outage_is_survived(serve_app: str, redis_server: EmbeddedRedis) -> None:
    redis_server.stop()
    try:
        response = post_query(serve_app, f"中国农业银行萧县支行营业部{uuid.uuid4().hex[:4]}")
        assert response.status_code == 200 and response.json()["source"] == "rules"
        stats = httpx.get(f"{serve_app}/api/v1/stats", headers=ADMIN, timeout=10).json()
        assert stats["result_cache"]["redis_up"] is False
    finally:
        redis_server.start()
    query = f"华夏银行江油西山支行{uuid.uuid4().hex[:4]}"
    assert post_query(serve_app, query).status_code == 200
    stats = httpx.get(f"{serve_app}/api/v1/stats", headers=ADMIN, timeout=10).json()
    assert stats["result_cache"]["redis_up"] is True


def test_an_extraction_over_extract_timeout_s_is_a_504_with_retry_after(serve_app: str) -> None:
    with ingress_tunables(serve_app, INGRESS_TUNABLES | {"extract_timeout_s": 0.001}):
        response = post_query(serve_app, f"建行人民路支行{uuid.uuid4().hex[:6]}", model="job_22")
    assert (response.status_code, response.json()["error"]["code"]) == (504, "timeout"), response.text
    assert response.headers["retry-after"] == "1" and "extraction did not finish" in response.json()["error"]["message"]


#: A branch the sample directory does not have, loaded while the application runs.
NEW_BRANCH = "华夏银行股份有限公司江油新城测试支行"
NEW_CODE = "304659719994"


def test_a_running_ingress_follows_a_directory_reload_and_an_adapter_re_registration(
    serve_app: str, serve_home: tuple[str, Path], tmp_path: Path
) -> None:
    from serve_app.db.pool import connect_admin
    from serve_app.directory.loader import LoadOptions, load_directory
    from serve_app.models.tiny import build_adapter

    database_url, home = serve_home
    assert post_query(serve_app, "华夏银行江油新城测试支行").json()["verdict"] != "match"
    version = ingress_stats(serve_app)["data_version"]
    cnaps = tmp_path / "update.csv"
    cnaps.write_text(
        "LName,BankCode,BankName,BankId,CityCode,CityName,ProvinceName,ProvinceCode\n"
        f"{NEW_BRANCH},{NEW_CODE},华夏银行,304100040000,6597,江油市,四川省,51\n",
        encoding="utf-8",
    )

    async def load() -> None:
        conn = await connect_admin(database_url)
        try:
            await load_directory(conn, cnaps, options=LoadOptions(partial=True))  # an update of one code
        finally:
            await conn.close()

    asyncio.run(load())
    wait_for(lambda: ingress_stats(serve_app)["data_version"] > version, timeout_s=30)
    answer = post_query(serve_app, "华夏银行江油新城测试支行").json()  # no restart, no stale cached answer
    assert (answer["verdict"], answer["matches"][0]["code"]) == ("match", NEW_CODE)

    # job_24 registered again with other weights: a new revision, loaded by the next request for it.
    old = httpx.get(f"{serve_app}/api/v1/adapters", headers=ADMIN, timeout=10).json()
    (old_revision,) = [a["revision"] for a in old if a["name"] == "job_24"]
    build_adapter(home / "models" / "demo-base", home / "models" / "adapters" / "job_24b", seed=124)
    assert httpx.delete(f"{serve_app}/api/v1/adapters/job_24", headers=ADMIN, timeout=10).status_code == 204
    created = httpx.post(f"{serve_app}/api/v1/adapters", json={"name": "job_24", "path": "job_24b"}, headers=ADMIN)
    assert created.status_code == 201 and created.json()["revision"] != old_revision, created.text
    new_ref = f"job_24@{created.json()['revision']}"

    from ray import serve

    model_server = serve.get_deployment_handle("ModelServer", app_name="test")

    def served_by_the_new_revision() -> bool:
        response = post_query(serve_app, f"建行人民路支行{uuid.uuid4().hex[:6]}", model="job_24")
        # The replica itself, asked over its handle (the stats board in Redis is another test's subject).
        return response.status_code == 200 and new_ref in model_server.stats.remote().result()["loaded_adapters"]

    wait_for(served_by_the_new_revision, timeout_s=60, interval_s=1)  # within the ingress's registry refresh


def readme_metrics() -> dict[str, set[str]]:
    """The metric table of docs/operations.md: each metric named there → the tags it lists."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    table = text.split("| metric | tags | from |", 1)[1].split("\n\n", 1)[0]
    listed = {}
    for row in table.splitlines()[2:]:
        names, tags = row.split("|")[1:3]
        for name in re.findall(r"`(serve_app_\w+)`", names):
            listed[name] = set(re.findall(r"`(\w+)`", tags))
    return listed


def promql_metrics(expression: str) -> set[str]:
    """The series an expression reads (``ray_…`` names; a histogram's ``_bucket`` as written)."""
    return set(re.findall(r"\bray_[a-z0-9_]+", expression))


def test_every_listed_metric_is_exported_and_the_dashboard_and_alerts_read_only_exported_ones(
    serve_app: str, metrics_port: int, redis_server: EmbeddedRedis
) -> None:
    """Takes every path whose metrics are listed (answers cached and not, adapters loaded and evicted, a bulk
    job, Redis down and back), then reads the application's metrics endpoint."""
    run = uuid.uuid4().hex[:6]
    for _ in range(2):
        assert post_query(serve_app, f"华夏银行江油西山支行{run}").status_code == 200
    for adapter in ("job_22", "job_23", "job_24"):  # three adapters, two slots: one is evicted
        assert post_query(serve_app, f"工行徐州经济开发区支行{run}", model=adapter).status_code == 200
    created = httpx.post(f"{serve_app}/api/v1/jobs?filename=metrics.csv", content=statement_csv(20), timeout=60)
    wait_for(lambda: job_status(serve_app, created.json()["id"])["state"] == "done", timeout_s=120)
    redis_server.stop()
    try:
        assert post_query(serve_app, f"中国农业银行萧县支行营业部{run}").status_code == 200
    finally:
        redis_server.start()
    root = Path(__file__).resolve().parents[1] / "k8s" / "monitoring"
    listed = readme_metrics()
    assert len(listed) >= 15

    def exported(name: str, samples: dict[str, set[str]]) -> set[str] | None:
        for series in (f"ray_{name}", f"ray_{name}_bucket"):
            if series in samples:
                return samples[series]
        return None

    url = f"http://127.0.0.1:{metrics_port}/metrics"
    missing: list[str] = []

    def all_exported() -> dict | None:
        samples = scrape(url)
        missing[:] = [name for name in listed if exported(name, samples) is None]
        return None if missing else samples

    try:
        samples = wait_for(all_exported, 90, 2)
    except AssertionError as exc:
        raise AssertionError(f"not exported: {missing}") from exc
    for name, tags in listed.items():
        assert tags <= exported(name, samples), (name, tags, exported(name, samples))

    dashboard = json.loads((root / "grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    rules = yaml.safe_load((root / "prometheus-rules.yaml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    expressions += [rule["expr"] for rule in alerts]
    read = set().union(*(promql_metrics(expression) for expression in expressions))
    assert read and not read - set(samples), sorted(read - set(samples))
    assert {rule["alert"] for rule in alerts} >= {
        "ServeAppErrorRate", "ServeAppLatencyP99", "ServeAppQueueDeepAtMaxReplicas", "ServeAppRedisDown",
        "ServeAppPostgresDown", "ServeAppQueryLogBacklogGrowing",
    }  # fmt: skip
    assert all(
        rule["labels"]["severity"] in {"warning", "critical"} and rule["annotations"]["summary"] for rule in alerts
    )
