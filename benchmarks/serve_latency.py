"""End-to-end latency through Ray Serve's proxy, side by side in one run.

Deploys, in one local Ray Serve instance, a trivial echo deployment and the application from
``configs/local.yaml`` (embedded PostgreSQL and Valkey, demo directory and model), then drives each path
with an async load generator on loopback at several concurrencies:

- ``echo``: the floor — proxy + one replica + JSON, no work;
- ``cached``: one hot query (result cache hit in the ingress);
- ``rules``: unique queries (normalize, extraction, PostgreSQL retrieval, cache writes, query log);
- ``model``: unique queries with ``model: job_22`` (adds the extractor → ModelServer hop and generation).

    python benchmarks/serve_latency.py [--requests 200] [--concurrency 1,8,32] [--json …]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from serve_app.cli import prepare_database, register_demo_model
from serve_app.db.pool import connect_admin
from serve_app.directory.loader import load_demo_if_empty
from serve_app.directory.records import demo_cnaps_path, read_cnaps
from serve_app.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from serve_app.settings import Settings

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "local.yaml"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def drive(url: str, bodies: list[dict], concurrency: int) -> dict:
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            response = await client.post(url, json=body)
            latencies.append((time.perf_counter() - started) * 1000)
            failures += response.status_code != 200

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "requests": len(bodies),
        "failures": failures,
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "requests_per_s": round(len(bodies) / elapsed, 1),
    }


def deploy(port: int) -> None:
    import ray
    from ray import serve
    from ray.serve._private import api as serve_private
    from ray.serve.schema import ServeDeploySchema
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
    class Echo:
        async def __call__(self, request: Request) -> JSONResponse:
            return JSONResponse(await request.json())

    ray.init(include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Echo.bind(), name="echo", route_prefix="/echo")
    config = yaml.safe_load(CONFIG.read_text())
    app = config["applications"][0]
    for deployment in app["deployments"]:
        if deployment["name"] == "Ingress":  # one client drives all load: lift its rate limit
            deployment["user_config"] |= {"rate_limit_per_s": 1_000_000, "rate_limit_burst": 1_000_000}
    client = serve_private.serve_start()
    client.deploy_apps(ServeDeploySchema.model_validate({"applications": [app]}), _blocking=True)


async def prepare(home: Path) -> tuple[EmbeddedPostgres, EmbeddedRedis]:
    postgres, redis = EmbeddedPostgres(home / "postgres"), EmbeddedRedis(home / "valkey")
    # SERVE_APP_HOME stays the user's: the demo model under it is built once (training takes minutes)
    # and reused; the databases are this run's own.
    os.environ.update(
        SERVE_APP_DATABASE_URL=postgres.start(),
        SERVE_APP_REDIS_URL=redis.start(),
        RAY_AUTH_MODE="disabled",
    )
    settings = Settings()
    conn = await connect_admin(settings.database_url)
    try:
        await prepare_database(conn)
        await load_demo_if_empty(conn)
    finally:
        await conn.close()
    await register_demo_model(settings, settings.database_url)
    return postgres, redis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--model-requests", type=int, default=48)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/serve_latency.json"))
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    names = [r.name for r in read_cnaps(demo_cnaps_path())]

    with tempfile.TemporaryDirectory(prefix="serve-app-latency-") as tmp:
        postgres, redis = asyncio.run(prepare(Path(tmp)))
        port = free_port()
        try:
            deploy(port)
            base = f"http://127.0.0.1:{port}"
            query_url = f"{base}/api/v1/query"
            results: dict[str, dict] = {}
            cursor = 0
            for level in levels:
                hot = {"query": "华夏银行江油西山支行"}
                asyncio.run(drive(query_url, [hot], 1))  # make it hot
                unique = names[cursor : cursor + args.requests]
                model = [
                    {"query": n + "营业室", "model": "job_22"}
                    for n in names[-(cursor + args.model_requests) :][: args.model_requests]
                ]
                cursor += args.requests + args.model_requests
                results[f"echo@{level}"] = asyncio.run(drive(f"{base}/echo", [hot] * args.requests, level))
                results[f"cached@{level}"] = asyncio.run(drive(query_url, [hot] * args.requests, level))
                results[f"rules@{level}"] = asyncio.run(drive(query_url, [{"query": n} for n in unique], level))
                results[f"model@{level}"] = asyncio.run(drive(query_url, model, level))
        finally:
            from ray import serve

            serve.shutdown()
            redis.stop()
            postgres.stop()

    print("\nEnd-to-end through the Serve proxy (loopback, load generator on the same 2-core machine)\n")
    header = f"{'path':>8} {'conc':>5} {'reqs':>5} {'fail':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}"
    print(header)
    print("-" * len(header))
    for key, row in results.items():
        path, level = key.split("@")
        print(
            f"{path:>8} {level:>5} {row['requests']:>5} {row['failures']:>5} {row['p50_ms']:>8.1f} "
            f"{row['p99_ms']:>8.1f} {row['requests_per_s']:>8.1f}"
        )
    print()
    for level in levels:
        echo, cached, rules = (results[f"{p}@{level}"] for p in ("echo", "cached", "rules"))
        print(
            f"concurrency {level}: cached p50 / echo p50 = {cached['p50_ms'] / echo['p50_ms']:.2f}x; "
            f"rules p50 - echo p50 = {rules['p50_ms'] - echo['p50_ms']:+.1f} ms"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
