"""A real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a raylet per node): the
application spread over nodes by custom resources, a model node SIGKILLed under load, the node rejoining,
and the multiplexer's adapter affinity across two model replicas.

Nodes: a head (no CPUs: Serve's controller and proxy), an ``app_node`` (Ingress, EntityExtractor,
JobWorker) and two ``model_node``s (one ModelServer replica each). Figures are printed and kept in
``REPORT`` (``-s`` shows them).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from unittest import mock

import httpx
import pytest

from serve_app.ops.embedded import EmbeddedRedis, free_port
from tests.conftest import create_database
from tests.serve_harness import Load, deploy, post_query, prepare_app_database, serve_details, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ADMIN = {"authorization": "Bearer cluster-admin-token-0123456789"}
#: Each model node holds two replicas' worth, so one node can take both when the other is gone.
MODEL_NODE = {"num_cpus": 1, "resources": {"model_node": 1.0}}
APP_NODE = {"num_cpus": 2, "resources": {"app_node": 1.0}}
#: A small object store per node (nothing large crosses nodes here).
NODE_MEMORY = {"object_store_memory": 80 * 2**20}
PINNED_APP = {
    "num_cpus": 0.1,
    "custom_resources": {"app_node": 0.1},
    "autoscaling": {"min_replicas": 1, "max_replicas": 1},
}
APP_ARGS = {
    "ingress": {"resources": PINNED_APP},
    "extractor": {"resources": PINNED_APP},
    "jobs": {"resources": {"num_cpus": 0.1, "custom_resources": {"app_node": 0.1}}},
    "model": {
        "max_adapters_per_replica": 2,
        "preload_adapters": ["job_22"],
        "resources": {
            "num_cpus": 0.2,
            "custom_resources": {"model_node": 0.5},
            "max_ongoing_requests": 4,
            "max_queued_requests": 16,
            "autoscaling": {"min_replicas": 2, "max_replicas": 2},
        },
        "tunables": {"max_batch_size": 4, "max_new_tokens": 32},
    },
}
DEPLOYMENTS = [
    {
        "name": "Ingress",
        "user_config": {"rate_limit_per_s": 10_000, "rate_limit_burst": 20_000, "extract_timeout_s": 30},
    },
    {"name": "ModelServer", "user_config": {"max_batch_size": 4, "max_new_tokens": 32}},
]
REPORT: dict = {}


@pytest.fixture(scope="module")
def cluster(embedded_postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object, dict]]:
    """(base URL, the Cluster, {"app": node, "model": [node, node]})."""
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    home = tmp_path_factory.mktemp("cluster-home")
    redis = EmbeddedRedis(tmp_path_factory.mktemp("cluster-redis"), port=free_port())
    redis.start()
    database_url = asyncio.run(create_database(embedded_postgres, "cluster"))
    asyncio.run(prepare_app_database(database_url, home))
    environment = {  # the raylets this process starts, and their workers, inherit these
        "SERVE_APP_DATABASE_URL": database_url,
        "SERVE_APP_REDIS_URL": redis.url,
        "SERVE_APP_HOME": str(home),
        "SERVE_APP_ADMIN_TOKEN": "cluster-admin-token-0123456789",
        "RAY_AUTH_MODE": "disabled",
    }
    with mock.patch.dict(os.environ, environment):  # and later test modules do not
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, **NODE_MEMORY})
        nodes = {"app": cluster.add_node(**APP_NODE, **NODE_MEMORY), "model": []}
        nodes["model"] = [cluster.add_node(**MODEL_NODE, **NODE_MEMORY) for _ in range(2)]
        ray.init(address=cluster.address, log_to_driver=False)
        port = free_port()
        # One proxy, on the head: on one machine every node's proxy would want the same port.
        serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
        deploy(APP_ARGS, DEPLOYMENTS, name="cluster")
        try:
            yield f"http://127.0.0.1:{port}", cluster, nodes
        finally:
            serve.shutdown()
            ray.shutdown()
            cluster.shutdown()
            redis.stop()


def replicas(deployment: str) -> list[dict]:
    details = serve_details()["applications"]["cluster"]["deployments"][deployment]
    return [r for r in details["replicas"] if r["state"] == "RUNNING"]


def model_replica_stats(base: str) -> list[dict]:
    return httpx.get(f"{base}/api/v1/query/model-cache-stats", headers=ADMIN, timeout=10).json()["replicas"]


def test_deployments_are_placed_by_node_resources_and_requests_cross_nodes(cluster) -> None:
    base, _, nodes = cluster
    app_node = nodes["app"].node_id
    model_nodes = {node.node_id for node in nodes["model"]}
    for deployment in ("Ingress", "EntityExtractor", "JobWorker"):
        assert {r["node_id"] for r in replicas(deployment)} == {app_node}, deployment
    running = wait_for(lambda: len(r := replicas("ModelServer")) == 2 and r, 120)
    placed = {replica["node_id"] for replica in running}
    assert placed == model_nodes  # Serve spreads the two replicas over the two model nodes
    answer = post_query(base, "工行徐州经济开发区支行", model="job_22")
    assert answer.status_code == 200 and answer.json()["model"] == "job_22"  # ingress → extractor → model node


def test_a_model_node_killed_under_load(cluster) -> None:
    base, cluster_handle, nodes = cluster
    victim = nodes["model"][1]
    survivor = nodes["model"][0].node_id
    with Load(base, {"cold": 2, "model": 3}, timeout_s=60, max_s=240) as load:
        wait_for(lambda: len(load.since(0, "model")) >= 10, 120)
        killed_at = time.monotonic()
        cluster_handle.remove_node(victim, allow_graceful=False)  # SIGKILL: raylet, object store, workers
        both = wait_for(
            lambda: len(r := replicas("ModelServer")) == 2 and all(x["node_id"] == survivor for x in r) and r, 180
        )
        rescheduled_s = time.monotonic() - killed_at
        served_after = wait_for(lambda: [o for o in load.since(time.monotonic() - 5, "model") if o.ok], 60)
    in_flight = load.in_flight_at(killed_at, "model")  # counted once every request has its outcome
    after = load.since(killed_at)
    failed = [o for o in after if not o.ok]
    REPORT["node_kill"] = {
        "requests": len(load.outcomes),
        "after_kill": len(after),
        "failed_after_kill": len(failed),
        "failures": sorted({(o.status, o.code, (o.message or "")[:120]) for o in failed}),
        "model_in_flight_at_kill": in_flight,
        "rescheduled_s": round(rescheduled_s, 1),
    }
    print(REPORT["node_kill"])
    assert len(both) == 2 and served_after
    assert all(o.kind == "model" for o in failed), failed  # the rules path never touched the dead node
    assert all((o.status, o.code) in {(503, "model_unavailable"), (503, "overloaded")} for o in failed), failed
    assert len(failed) <= in_flight + 4, REPORT["node_kill"]  # what the node held, plus routes to it in the gap

    cluster_handle.add_node(**MODEL_NODE, **NODE_MEMORY)  # the node rejoins
    import ray

    wait_for(lambda: sum(1 for n in ray.nodes() if n["Alive"] and "model_node" in n["Resources"]) == 2, 60)
    assert post_query(base, "建行人民路支行", model="job_23").status_code == 200


def test_adapter_affinity_and_a_cold_burst(cluster) -> None:
    base, _, _ = cluster
    before = {s["replica"]: s for s in model_replica_stats(base)}

    async def send(queries: list[tuple[str, str]]) -> list[int]:
        async with httpx.AsyncClient(timeout=120) as client:
            slots = asyncio.Semaphore(8)

            async def one(text: str, adapter: str) -> int:
                async with slots:
                    body = {"query": text, "model": adapter}
                    return (await client.post(f"{base}/api/v1/query", json=body)).status_code

            return await asyncio.gather(*(one(t, a) for t, a in queries))

    def settled(count: int) -> list[dict] | None:  # replicas publish their counters every second or so
        stats = model_replica_stats(base)
        done = sum(s["generated_requests"] - before.get(s["replica"], {}).get("generated_requests", 0) for s in stats)
        return stats if done >= count else None

    hot = [(f"华夏银行成都分行{i}", ("job_22", "job_23")[i % 2]) for i in range(80)]
    assert set(asyncio.run(send(hot))) == {200}
    stats = wait_for(lambda: settled(len(hot)), 30)
    hits = sum(s["hits"] - before.get(s["replica"], {}).get("hits", 0) for s in stats)
    affinity = hits / len(hot)

    loads_before = sum(s["loads"] for s in stats)
    cold = [(f"建行人民路支行{i}", "job_24") for i in range(50)]
    assert set(asyncio.run(send(cold))) == {200}
    loads = sum(s["loads"] for s in wait_for(lambda: settled(len(hot) + len(cold)), 30)) - loads_before
    REPORT["affinity"] = {"hot_requests": len(hot), "hit_rate": round(affinity, 3), "cold_burst_loads": loads}
    print(REPORT["affinity"])
    assert affinity >= 0.95, REPORT["affinity"]
    assert loads <= 2, REPORT["affinity"]
