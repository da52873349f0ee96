"""A first run, end to end: `serve-app up` on a home with no model answers from the rules at once, answers
503 ``model_warming`` (with Retry-After) to requests naming an adapter while the model is built in the
background — its progress on ``/readyz`` — and lets the model replicas join without a restart. The console
keeps the service's own lines; Ray's and Serve's go to the log file it names. (The tiny random model
stands in for SmolLM2 here: seconds to build instead of minutes.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from serve_app.ops.embedded import free_port
from tests.conftest import create_database

pytestmark = [pytest.mark.serve, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SEED, SEED_CODE = "华夏银行江油西山支行", "304659715925"


def _config(port: int) -> dict:
    """configs/local.yaml on ``port``, one replica of each deployment (2 cores run this and the test)."""
    config = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    config["http_options"]["port"] = port
    (app,) = config["applications"]
    for deployment in app["deployments"]:
        if "autoscaling_config" in deployment:
            deployment["autoscaling_config"] |= {"min_replicas": 1, "max_replicas": 1}
    return config


def _wait_for(output: Path, process: subprocess.Popen, line: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while line not in (printed := output.read_text(errors="replace")):
        assert process.poll() is None, printed[-3000:]
        assert time.monotonic() < deadline, printed[-3000:]
        time.sleep(0.5)
    return printed


def test_the_rules_answer_at_once_and_the_model_joins_when_built(embedded_postgres, embedded_redis, tmp_path) -> None:
    database_url = asyncio.run(create_database(embedded_postgres, "first_run"))
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config(port)))
    home = tmp_path / "home"
    # Ray's default authentication (a token for a local instance), as a user's first run has it.
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"} | {
        "SERVE_APP_DATABASE_URL": database_url,
        "SERVE_APP_REDIS_URL": embedded_redis.url,
        "SERVE_APP_HOME": str(home),
    }
    output = tmp_path / "up.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("serve-app")), "up", "--config", str(config), "--tiny-model"],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(output, process, "ready in", 240)
        rules = httpx.post(f"{base}/api/v1/query", json={"query": SEED}, timeout=30)
        assert rules.status_code == 200 and rules.json()["matches"][0]["code"] == SEED_CODE
        # Asked at once: the build starts after the first answer, and its replicas take tens of seconds to join.
        warming = httpx.post(f"{base}/api/v1/query", json={"query": SEED, "model": "job_22"}, timeout=30)
        assert warming.status_code == 503 and warming.json()["error"]["code"] == "model_warming", warming.text
        assert warming.headers["retry-after"] == "30"
        assert httpx.get(f"{base}/readyz", timeout=30).json()["models"] == "warming"
        printed = _wait_for(output, process, "model replicas ready", 420)
        asked = httpx.post(f"{base}/api/v1/query", json={"query": f"{SEED}2", "model": "job_22"}, timeout=90)
        assert asked.status_code == 200 and asked.json()["model"] == "job_22", asked.text
        assert httpx.get(f"{base}/readyz", timeout=30).json()["models"] in ("ready", "busy")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    printed = output.read_text(errors="replace")
    assert "answering from the rules" in printed and f"Ray and Serve log to {home / 'logs' / 'serve.log'}" in printed
    assert "ServeReplica" not in printed and "ServeController" not in printed  # Ray's lines are in the log file
    assert "ServeController" in (home / "logs" / "serve.log").read_text(errors="replace")
    assert not (home / "models" / "build-progress.json").exists()
