"""Ray's queue-depth autoscaler, for real: load on the ingress adds a replica, and its end removes it.

A rules-only application (no model replicas, no job workers) whose ingress may run 1 or 2 replicas and
wants one per 2 ongoing requests. Uncached queries from 16 concurrent clients keep far more than that
in flight; the test polls Serve's own view of the deployment, never the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from serve_app.ops.embedded import free_port
from tests.conftest import loaded_database
from tests.serve_harness import Load, deploy, running_valkey, serve_details, start_ray_serve, stop_ray_serve, wait_for

pytestmark = [pytest.mark.serve, pytest.mark.slow]

APP = "autoscale"
AUTOSCALING = {
    "min_replicas": 1,
    "max_replicas": 2,
    "target_ongoing_requests": 2,
    "upscale_delay_s": 0,
    "downscale_delay_s": 2,
    "look_back_period_s": 11,
}
APP_ARGS = {
    "ingress": {"resources": {"num_cpus": 0.1, "autoscaling": AUTOSCALING}},
    "extractor": {"resources": {"num_cpus": 0.1, "autoscaling": {"min_replicas": 1, "max_replicas": 1}}},
    "model": None,
    "jobs": None,
}
UNLIMITED = {"rate_limit_per_s": 1_000_000, "rate_limit_burst": 1_000_000}


@pytest.fixture(scope="module")
def app(embedded_postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_valkey(tmp_path_factory.mktemp("autoscale-valkey")) as redis:
        env = {
            "SERVE_APP_DATABASE_URL": asyncio.run(loaded_database(embedded_postgres, "autoscale")),
            "SERVE_APP_REDIS_URL": redis.url,
            "SERVE_APP_HOME": str(tmp_path_factory.mktemp("autoscale-home")),
        }
        port = free_port()
        start_ray_serve(env, port)
        try:
            deploy(
                APP_ARGS, [{"name": "Ingress", "user_config": UNLIMITED, "autoscaling_config": AUTOSCALING}], name=APP
            )
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_ray_serve()


def running_ingress_replicas() -> int:
    deployment = serve_details()["applications"][APP]["deployments"]["Ingress"]
    return sum(replica["state"] == "RUNNING" for replica in deployment["replicas"])


def test_load_adds_an_ingress_replica_and_its_end_removes_it(app: str) -> None:
    assert running_ingress_replicas() == 1
    with Load(app, {"cold": 16}, max_s=240) as load:
        wait_for(lambda: running_ingress_replicas() == 2, timeout_s=120, interval_s=0.5)
        # The new replica answers too: the load keeps being served while it joins.
        load.sent_since(load.started, 50)
    assert load.outcomes and all(o.ok for o in load.outcomes), {(o.status, o.code) for o in load.outcomes if not o.ok}
    wait_for(lambda: running_ingress_replicas() == 1, timeout_s=120, interval_s=0.5)
