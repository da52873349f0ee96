"""``serve-app bootstrap`` on real PostgreSQL: a fresh database to serving, a second run that changes nothing,
two runs at once, a directory served over HTTP, and an adapter manifest with a broken entry."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import asyncpg
import pytest

from serve_app.db.pool import create_pool
from serve_app.directory.records import demo_cnaps_path
from serve_app.models.paths import ModelPaths
from serve_app.models.tiny import make_tiny_model
from serve_app.ops.bootstrap import DirectorySource, bootstrap
from serve_app.query.pipeline import build_pipeline
from serve_app.schemas import QueryRequest

SEED_CODE = "304659715925"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    make_tiny_model(folder)
    return folder


async def state(url: str) -> dict:
    conn = await asyncpg.connect(url)
    try:
        return {
            "data_version": await conn.fetchval("SELECT value FROM directory_meta WHERE key = 'data_version'"),
            "branches": await conn.fetchval("SELECT count(*) FROM branches"),
            "adapters": [tuple(r) for r in await conn.fetch("SELECT name, revision FROM adapters ORDER BY name")],
            "migrations": await conn.fetchval("SELECT count(*) FROM schema_migrations"),
        }
    finally:
        await conn.close()


@pytest.mark.slow
async def test_a_fresh_database_serves_after_one_run_and_a_second_run_changes_nothing(
    empty_database_url, models
) -> None:
    paths = ModelPaths.resolve(models)
    manifest = {"job_22": "job_22", "job_23": "job_23"}
    first = await bootstrap(empty_database_url, None, manifest, paths)
    assert first.ok and len(first.migrations) >= 6 and first.directory.startswith("loaded ")
    assert first.adapters == {"job_22": "registered", "job_23": "registered"}
    before = await state(empty_database_url)
    pool = await create_pool(empty_database_url)
    try:
        result = await (await build_pipeline(pool)).run(QueryRequest(query="华夏银行江油西山支行"))
    finally:
        await pool.close()
    assert result.verdict == "match" and result.matches[0].code == SEED_CODE

    second = await bootstrap(empty_database_url, None, manifest, paths)
    assert (second.migrations, second.directory) == ([], "unchanged")
    assert second.adapters == {"job_22": "unchanged", "job_23": "unchanged"}
    assert await state(empty_database_url) == before  # no reload, no new revision


async def test_two_bootstraps_at_once_one_does_the_work(empty_database_url, models) -> None:
    paths = ModelPaths.resolve(models)
    reports = await asyncio.gather(*(bootstrap(empty_database_url, None, {"job_22": "job_22"}, paths) for _ in "ab"))
    assert all(report.ok for report in reports)
    assert sorted(r.directory.split(" ")[0] for r in reports) == ["loaded", "unchanged"]
    assert sorted(r.adapters["job_22"] for r in reports) == ["registered", "unchanged"]
    after = await state(empty_database_url)
    assert after["data_version"] == "1" and len(after["adapters"]) == 1


async def test_a_directory_from_a_url_and_a_changed_file_reloads(empty_database_url, tmp_path) -> None:
    served = tmp_path / "www"
    served.mkdir()
    lines = demo_cnaps_path().read_text(encoding="utf-8").splitlines()
    (served / "cnaps.csv").write_text("\n".join(lines[:2001]) + "\n", encoding="utf-8")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/cnaps.csv"
    source = DirectorySource(url, allow_http=True)  # a trusted network: plain http only when told
    try:
        with pytest.raises(ValueError, match="plain http"):
            await bootstrap(empty_database_url, DirectorySource(url))
        first = await bootstrap(empty_database_url, source)
        assert first.directory == "loaded 2000 branches (data version 1)"
        assert (await bootstrap(empty_database_url, source)).directory == "unchanged"
        (served / "cnaps.csv").write_text("\n".join(lines[:3001]) + "\n", encoding="utf-8")
        with pytest.raises(ValueError, match="SHA-256"):  # not the file the operator vouched for
            await bootstrap(empty_database_url, DirectorySource(url, sha256="0" * 64, allow_http=True))
        with pytest.raises(ValueError, match="over 100,000 bytes"):
            await bootstrap(empty_database_url, DirectorySource(url, max_bytes=100_000, allow_http=True))
        digest = hashlib.sha256((served / "cnaps.csv").read_bytes()).hexdigest()
        second = await bootstrap(empty_database_url, DirectorySource(url, sha256=digest, allow_http=True))
        assert second.directory == "loaded 3000 branches (data version 2)"
    finally:
        server.shutdown()


def test_the_command_reports_a_broken_adapter_registers_the_rest_and_fails(empty_database_url, models, tmp_path):
    broken = models / "adapters" / "broken"
    shutil.copytree(models / "adapters" / "job_23", broken, dirs_exist_ok=True)
    (broken / "adapter_config.json").write_text("{not json")
    manifest = tmp_path / "adapters.yaml"
    manifest.write_text("adapters:\n  job_22: job_22\n  broken: broken\n  missing: nowhere\n")
    env = os.environ | {"SERVE_APP_DATABASE_URL": empty_database_url, "SERVE_APP_HOME": str(models.parent)}
    env["SERVE_APP_HOME"] = str(tmp_path / "home")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "models").symlink_to(models)
    command = [str(Path(sys.executable).with_name("serve-app")), "bootstrap", "--adapters", str(manifest)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["adapters"]["job_22"] == "registered" and report["directory"].startswith("loaded")
    assert report["adapters"]["broken"].startswith("failed: ") and report["adapters"]["missing"].startswith("failed: ")
