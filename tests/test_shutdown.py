"""Graceful shutdown, end to end: `serve-app up` stopped by SIGTERM or SIGINT, within Kubernetes' default
grace period, loses no acknowledged query-log row."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from serve_app.ops.embedded import free_port
from tests.conftest import create_database
from tests.serve_harness import fetch_value

pytestmark = [pytest.mark.serve, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
QUERIES = 25
GRACE_PERIOD_S = 30  # Kubernetes' default terminationGracePeriodSeconds: SIGKILL follows after it
ADMIN_TOKEN = "shutdown-admin-token-0123456789"


def _rules_only_config(port: int) -> dict:
    """configs/local.yaml without the model, and a query log that only a shutdown flushes."""
    config = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    config["http_options"]["port"] = port
    (app,) = config["applications"]
    app["args"]["model"] = None
    app["deployments"] = [d for d in app["deployments"] if d["name"] != "ModelServer"]
    for deployment in app["deployments"]:
        if "autoscaling_config" in deployment:  # JobWorker has a fixed number of replicas
            deployment["autoscaling_config"] |= {"min_replicas": 1, "max_replicas": 1}
    ingress = next(d for d in app["deployments"] if d["name"] == "Ingress")
    ingress["user_config"] |= {"query_log_batch": 100_000, "query_log_interval_s": 3600}
    return config


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    ("stop_signal", "ingress"),
    [(signal.SIGTERM, "proxy"), (signal.SIGINT, "proxy"), (signal.SIGTERM, "haproxy")],
    ids=["sigterm", "sigint", "sigterm-haproxy"],
)
def test_a_stop_signal_flushes_every_acknowledged_query_log_row_in_time(
    embedded_postgres, embedded_redis, tmp_path, stop_signal, ingress
) -> None:
    """SIGINT reaches the pid alone, and the process starts with SIGINT ignored, as a non-interactive shell
    starts a background job (`serve-app up &`): it must still stop. With HAProxy in front of the ingress
    replicas (``--ingress haproxy``) the answers, the error contract and the shutdown are the same."""
    database_url = asyncio.run(create_database(embedded_postgres, f"shutdown_{stop_signal.name.lower()}_{ingress}"))
    password = f"pw-{uuid.uuid4().hex}"  # trust auth ignores it; it must never be printed
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_rules_only_config(port)))
    env = os.environ | {
        "SERVE_APP_DATABASE_URL": database_url.replace("://postgres@", f"://postgres:{password}@"),
        "SERVE_APP_REDIS_URL": embedded_redis.url,
        "SERVE_APP_HOME": str(tmp_path / "home"),
        "RAY_AUTH_MODE": "disabled",
        "SERVE_APP_ADMIN_TOKEN": ADMIN_TOKEN,
        # HAProxy's own metrics and stats ports (Ray's defaults are the fixed 9101 and 8404): free ones, so
        # a run never collides with another on this machine or with one still stopping.
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
    }
    output = tmp_path / "up.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("serve-app")), "up", "--config", str(config), "--no-demo-model",
             "--ingress", ingress],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_ignore_sigint if stop_signal == signal.SIGINT else None,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while "ready in" not in output.read_text(errors="replace"):
            assert process.poll() is None, output.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, output.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        base = f"http://127.0.0.1:{port}"
        for i in range(QUERIES):
            response = httpx.post(f"{base}/api/v1/query", json={"query": f"华夏银行江油西山支行{i}"}, timeout=30)
            assert response.status_code == 200, response.text
            assert response.json()["matches"][0]["code"] == "304659715925"
        malformed = httpx.post(f"{base}/api/v1/query", content=b"{not json", timeout=30)
        assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "invalid_json"
        assert httpx.get(f"{base}/no/such/route", timeout=30).json()["error"]["code"] == "not_found"
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        stats = httpx.get(f"{base}/api/v1/stats", headers=admin, timeout=10).json()
        pending = stats["query_log"]["pending"]
        assert pending >= 1, json.dumps(stats)  # acknowledged, and still only in the ingress's buffer
        assert fetch_value(database_url, "SELECT count(*) FROM query_log") == QUERIES + 1 - pending

        process.send_signal(stop_signal)
        assert process.wait(timeout=GRACE_PERIOD_S) == 0
    finally:
        if process.poll() is None:  # the test failed early: stop it as a user would, so Ray is not left behind
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    # The readiness probe's first query is acknowledged and logged too.
    assert fetch_value(database_url, "SELECT count(*) FROM query_log") == QUERIES + 1
    printed = output.read_text(errors="replace")
    assert password not in printed and "postgres:***@" in printed
