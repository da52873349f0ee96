"""End-to-end latency through Ray Serve's proxy, side by side in one run.

Deploys, in one local Ray Serve instance, a trivial echo deployment and the application from
``configs/local.yaml`` (embedded PostgreSQL and Valkey, demo directory and model), then drives each path
with an async load generator on loopback at several concurrencies:

- ``healthz``: the ingress's own floor — proxy + the ingress replica's Starlette app, no work;
- ``echo``: proxy + a bare replica + JSON, no work;
- ``cached``: one hot query (result cache hit in the ingress);
- ``rules``: unique queries (normalize, extraction, PostgreSQL retrieval, cache writes, query log);
- ``model``: unique queries with ``model: job_22`` (adds the extractor → ModelServer hop and generation).

It then breaks the uncached rules query (and the cached one) at concurrency 1 into its stages (medians
of the ``timings_ms`` each answer carries, and the client's own clock for what lies outside the
ingress), prints the goals as ratios, and optionally:

- ``--profile S``: S seconds of py-spy flame graphs of the Ingress and EntityExtractor replicas under
  uncached rules load at the highest concurrency (``benchmarks/results/flame_*.svg``; needs py-spy);
- ``--model-batch-sizes 1,8,16``: the model path at the highest concurrency once per ModelServer
  ``max_batch_size``, changed live through ``user_config``;
- ``--no-model``: the application without model replicas (``model: null``) and no model path, for the
  paths that never reach a model; nothing is trained or loaded, so a run takes minutes, not the demo
  model's first build.

Each ingress mode of ``--ingress`` (``serve_app.ops.ingress_modes``: Serve's proxy actor, HAProxy straight to
the ingress replicas) is measured in its own process and Ray instance, one after the other, and the modes
are then printed side by side (``serve_latency.json``; each mode's own report beside it).

    python benchmarks/serve_latency.py [--requests 200] [--concurrency 1,8,32] [--profile 20]
        [--model-batch-sizes 1,4,8,16,32] [--no-model] [--ingress proxy,haproxy] [--json …]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

from serve_app.cli import prepare_database, register_demo_model
from serve_app.db.pool import connect_admin
from serve_app.directory.loader import load_demo_if_empty
from serve_app.directory.records import demo_cnaps_path, read_cnaps
from serve_app.ops.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from serve_app.ops.ingress_modes import INGRESS_MODES, ingress_environment
from serve_app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "local.yaml"
RESULTS = ROOT / "benchmarks" / "results"
#: The stages of one uncached query, in the order the ingress runs them (``timings_ms`` keys).
STAGES = ("rate_limit", "cache_lookup", "extract", "rules", "retrieve", "cache_write")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def drive(url: str, bodies: list[dict | None], concurrency: int, stages: list[dict] | None = None) -> dict:
    """Send every body (None: a GET) with ``concurrency`` requests in flight; ``stages`` collects each
    answer's ``timings_ms`` with the client's own ``client`` milliseconds."""
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
            response = await (client.get(url) if body is None else client.post(url, json=body))
            elapsed = (time.perf_counter() - started) * 1000
            latencies.append(elapsed)
            failures += response.status_code != 200
            if stages is not None and response.status_code == 200:
                stages.append(response.json()["timings_ms"] | {"client": elapsed})

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
        "requests_per_s": round(len(bodies) / elapsed, 3),
    }


def application(model_batch_size: int | None = None, with_model: bool = True) -> dict:
    """The application of ``configs/local.yaml``, its rate limit lifted (one client drives all the load),
    its model fallback off (the ``rules`` path is the rules alone; ``model`` measures the model), one
    ModelServer replica (a second on the same cores adds no compute, and its start would be measured as
    load: the model path measures batching) and, if given, the model replicas' ``max_batch_size`` set.
    ``with_model`` False: no model replicas at all (``model: null``)."""
    app = yaml.safe_load(CONFIG.read_text())["applications"][0]
    if not with_model:
        app["args"]["model"] = None
        app["deployments"] = [d for d in app["deployments"] if d["name"] != "ModelServer"]
    for deployment in app["deployments"]:
        if deployment["name"] == "Ingress":
            deployment["user_config"] |= {"rate_limit_per_s": 1_000_000, "rate_limit_burst": 1_000_000}
        if deployment["name"] == "EntityExtractor":
            deployment["user_config"] |= {"default_adapter": None}
        if deployment["name"] == "ModelServer":
            deployment["autoscaling_config"] |= {"min_replicas": 1, "max_replicas": 1}
            if model_batch_size is not None:
                deployment["user_config"] |= {"max_batch_size": model_batch_size}
    return app


def deploy_application(app: dict) -> None:
    """Deploy (or update in place) and wait until it is running."""
    from ray.serve._private import api as serve_private
    from ray.serve.schema import ServeDeploySchema

    client = serve_private.serve_start()
    client.deploy_apps(ServeDeploySchema.model_validate({"applications": [app]}), _blocking=True)


def deploy(port: int, with_model: bool = True) -> None:
    import ray
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
    class Echo:
        async def __call__(self, request: Request) -> JSONResponse:
            return JSONResponse(await request.json())

    ray.init(include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Echo.bind(), name="echo", route_prefix="/echo")
    deploy_application(application(with_model=with_model))


def replica_pids(deployment: str) -> list[int]:
    """Process ids of a deployment's replicas, found by the title Ray gives their processes."""
    import psutil

    title = f"ServeReplica:branch-query:{deployment}"
    return [p.pid for p in psutil.process_iter(["cmdline"]) if any(title in part for part in p.info["cmdline"] or ())]


def profile(url: str, bodies: list[dict], concurrency: int, seconds: int) -> dict:
    """Flame graphs (py-spy, sampled at 200 Hz) of the Ingress and EntityExtractor replicas while
    ``bodies`` are sent; the load is what the graphs show."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))  # beside a venv's python
    recorders = []
    for deployment in ("Ingress", "EntityExtractor"):
        for i, pid in enumerate(replica_pids(deployment)):
            svg = RESULTS / f"flame_{deployment.lower()}{'' if i == 0 else i}.svg"
            command = [py_spy, "record", "-r", "200", "-d", str(seconds), "-p", str(pid), "-o", str(svg), "-n"]
            recorders.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    time.sleep(1)  # attached before the load starts
    result = asyncio.run(drive(url, bodies, concurrency))
    for recorder in recorders:
        recorder.wait()
    return result


async def prepare_directory(home: Path) -> tuple[EmbeddedPostgres, EmbeddedRedis, list[dict]]:
    """Embedded PostgreSQL and Valkey under ``home``, migrated, with the demo directory; its records."""
    postgres, redis = EmbeddedPostgres(home / "postgres"), EmbeddedRedis(home / "valkey")
    # SERVE_APP_HOME stays the user's: the demo model under it is built once (training takes minutes)
    # and reused; the databases are this run's own.
    os.environ.update(
        SERVE_APP_DATABASE_URL=postgres.start(),
        SERVE_APP_REDIS_URL=redis.start(),
        RAY_AUTH_MODE="disabled",
    )
    conn = await connect_admin(Settings().database_url)
    try:
        await prepare_database(conn)
        await load_demo_if_empty(conn)
        rows = await conn.fetch(
            "SELECT code, name, bank_name, search_name, branch, province, city, district FROM branches"
        )
    finally:
        await conn.close()
    return postgres, redis, [dict(row) for row in rows]


async def prepare(home: Path, with_model: bool = True) -> tuple[EmbeddedPostgres, EmbeddedRedis]:
    """``prepare_directory``, and (``with_model``) the demo model registered (built first if missing)."""
    postgres, redis, _ = await prepare_directory(home)
    if with_model:
        settings = Settings()
        await register_demo_model(settings, settings.database_url)
    return postgres, redis


def _median_of(stages: list[dict]) -> Callable[[str], float]:
    """The median milliseconds of one ``timings_ms`` key (0 where an answer lacks it) over ``stages``."""
    return lambda key: statistics.median(row.get(key, 0.0) for row in stages)


def _outside_in(median: Callable[[str], float]) -> list[tuple[str, float]]:
    client, total = median("client"), median("total")
    return [
        ("client round trip", client),
        ("  outside the ingress handler (proxy, HTTP, routing, JSON)", client - total),
        ("  ingress handler (timings_ms.total)", total),
    ]


def stage_table(stages: list[dict]) -> list[tuple[str, float]]:
    """Median milliseconds of each stage of one uncached query, outside-in."""
    median = _median_of(stages)
    rows = _outside_in(median)
    label = {"extract": "    extraction (with the hop to the extractor, if made)", "rules": "      the rules' reading"}
    for stage in STAGES:
        rows.append((label.get(stage, f"    {stage}"), median(stage)))
    inside = sum(median(stage) for stage in STAGES if stage != "rules")
    rows.append(("    the rest (normalize, key, query log, serialisation)", median("total") - inside))
    return [(name, round(ms, 2)) for name, ms in rows]


def cached_stage_table(stages: list[dict]) -> list[tuple[str, float]]:
    """Median milliseconds of one cached query: the client's clock, the handler, its rate limit."""
    median = _median_of(stages)
    rows = [*_outside_in(median), ("    rate_limit", median("rate_limit"))]
    return [(name, round(ms, 2)) for name, ms in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--model-requests", type=int, default=24, help="at concurrency c: at least 2c")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--profile", type=int, default=0, help="seconds of py-spy flame graphs (0: none)")
    parser.add_argument("--model-batch-sizes", default="", help="e.g. 1,4,8,16,32 (empty: no sweep)")
    parser.add_argument("--no-model", action="store_true", help="no model replicas and no model path")
    parser.add_argument("--ingress", default="proxy,haproxy", help="ingress modes, each in its own Ray instance")
    parser.add_argument("--json", type=Path, default=RESULTS / "serve_latency.json")
    args = parser.parse_args()
    modes = args.ingress.split(",")
    if unknown := set(modes) - set(INGRESS_MODES):
        parser.error(f"unknown ingress modes {sorted(unknown)}; choose from {sorted(INGRESS_MODES)}")
    if len(modes) == 1 and ingress_environment(modes[0], os.environ) == dict(os.environ):
        measure(args, modes[0])
    else:
        compare_modes(modes, args)


def compare_modes(modes: list[str], args: argparse.Namespace) -> None:
    """Run this benchmark once per ingress mode, one after the other, each in a fresh process (Ray reads
    the switches when its processes start), then print the modes side by side."""
    json_path: Path = args.json
    shared = ["--requests", str(args.requests), "--model-requests", str(args.model_requests),
              "--concurrency", args.concurrency, "--profile", str(args.profile),
              "--model-batch-sizes", args.model_batch_sizes] + (["--no-model"] if args.no_model else [])  # fmt: skip
    reports = {}
    for mode in modes:
        mode_json = json_path.with_name(f"{json_path.stem}_{mode}.json")
        command = [sys.executable, __file__, *shared, "--ingress", mode, "--json", str(mode_json)]
        subprocess.run(command, env=ingress_environment(mode, os.environ), check=True)
        reports[mode] = json.loads(mode_json.read_text())
    first, *others = modes
    print(f"\nIngress modes side by side (p50 ms / req/s; ratio: mode over {first})\n")
    header = (
        f"{'path@conc':>14}" + "".join(f" {m:>20}" for m in modes) + "".join(f" {m + '/' + first:>16}" for m in others)
    )
    print(header)
    print("-" * len(header))
    for key, base in reports[first]["paths"].items():
        rows = [reports[m]["paths"].get(key) for m in modes]
        cells = "".join(f" {r['p50_ms']:>10.1f} {r['requests_per_s']:>9.2f}" if r else f" {'-':>20}" for r in rows)
        ratios = "".join(
            f" {r['p50_ms'] / base['p50_ms']:>7.2f} {r['requests_per_s'] / base['requests_per_s']:>8.2f}"
            if r else f" {'-':>16}"
            for r in rows[1:]
        )  # fmt: skip
        print(f"{key:>14}{cells}{ratios}")
    print("\nGoals by mode\n")
    for name in reports[first]["ratios"]:
        print(f"  {name:<36}" + "".join(f" {m}: {reports[m]['ratios'].get(name)!s:>6}" for m in modes))
    json_path.write_text(json.dumps({"modes": reports}, indent=2))
    print(f"wrote {json_path}")


def measure(args: argparse.Namespace, mode: str) -> None:
    """One ingress mode (already in this process's environment): every path, the stage table, the goals."""
    levels = [int(c) for c in args.concurrency.split(",")]
    sweep = [int(b) for b in args.model_batch_sizes.split(",") if b]
    if args.no_model:
        args.model_requests, sweep = 0, []
    names = [r.name for r in read_cnaps(demo_cnaps_path())]
    results: dict[str, dict] = {}
    stages: list[dict] = []
    cached_stages: list[dict] = []
    batch_sweep: dict[str, dict] = {}

    def model_bodies(level: int, skip: int) -> list[dict | None]:
        """``--model-requests``, and at least two full rounds of ``level`` (full batches, not one's tail)."""
        count = max(args.model_requests, 2 * level) if args.model_requests else 0
        return [{"query": n + "营业室", "model": "job_22"} for n in names[-(skip + count) :][:count]]

    with tempfile.TemporaryDirectory(prefix="serve-app-latency-") as tmp:
        postgres, redis = asyncio.run(prepare(Path(tmp), with_model=not args.no_model))
        port = free_port()
        try:
            deploy(port, with_model=not args.no_model)
            base = f"http://127.0.0.1:{port}"
            query_url = f"{base}/api/v1/query"
            cursor = 0
            hot = {"query": "华夏银行江油西山支行"}
            for level in levels:
                asyncio.run(drive(query_url, [hot], 1))  # make it hot
                unique: list[dict | None] = [{"query": n} for n in names[cursor : cursor + args.requests]]
                model = model_bodies(level, cursor)
                cursor += args.requests + len(model)
                collect, collect_cached = (stages, cached_stages) if level == 1 else (None, None)
                results[f"healthz@{level}"] = asyncio.run(drive(f"{base}/healthz", [None] * args.requests, level))
                results[f"echo@{level}"] = asyncio.run(drive(f"{base}/echo", [hot] * args.requests, level))
                results[f"cached@{level}"] = asyncio.run(drive(query_url, [hot] * args.requests, level, collect_cached))
                results[f"rules@{level}"] = asyncio.run(drive(query_url, unique, level, collect))
                if model:
                    results[f"model@{level}"] = asyncio.run(drive(query_url, model, level))
            top = max(levels)
            for batch_size in sweep:
                deploy_application(application(model_batch_size=batch_size))
                bodies = model_bodies(top, cursor)
                batch_sweep[str(batch_size)] = asyncio.run(drive(query_url, bodies, top))
                cursor += len(bodies)
            if args.profile:
                bodies = [{"query": n} for n in names[cursor : cursor + 10_000]]
                results[f"rules_profiled@{top}"] = profile(query_url, bodies, top, args.profile)
        finally:
            from ray import serve

            serve.shutdown()
            redis.stop()
            postgres.stop()

    print(f"\nEnd-to-end, ingress {mode} (loopback, load generator on the same 2-core machine)\n")
    header = f"{'path':>8} {'conc':>5} {'reqs':>5} {'fail':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}"
    print(header)
    print("-" * len(header))
    for key, row in results.items():
        path, level = key.split("@")
        print(
            f"{path:>8} {level:>5} {row['requests']:>5} {row['failures']:>5} {row['p50_ms']:>8.1f} "
            f"{row['p99_ms']:>8.1f} {row['requests_per_s']:>8.2f}"
        )
    breakdown = stage_table(stages)
    print(f"\nOne uncached rules query at concurrency 1: medians of {len(stages)} answers' timings_ms (ms)\n")
    for name, ms in breakdown:
        print(f"{name:<62} {ms:>7.2f}")
    cached_breakdown = cached_stage_table(cached_stages)
    print(f"\nOne cached query at concurrency 1: medians of {len(cached_stages)} answers (ms)\n")
    for name, ms in cached_breakdown:
        print(f"{name:<62} {ms:>7.2f}")
    if batch_sweep:
        print(f"\nModel path at concurrency {max(levels)} by ModelServer max_batch_size\n")
        for batch_size, row in batch_sweep.items():
            rate = row["requests_per_s"]
            print(f"  max_batch_size {batch_size:>3}: p50 {row['p50_ms']:>8.1f} ms  {rate:>6.2f} req/s")
    low, high = min(levels), max(levels)

    def r(path: str, level: int) -> dict:
        return results[f"{path}@{level}"]

    ratios = {
        "cached_p50_over_healthz_p50@1": round(r("cached", low)["p50_ms"] / r("healthz", low)["p50_ms"], 2),
        "rules_p50_minus_healthz_p50_ms@1": round(r("rules", low)["p50_ms"] - r("healthz", low)["p50_ms"], 1),
        "rules_rps_over_echo_rps@32": round(r("rules", high)["requests_per_s"] / r("echo", high)["requests_per_s"], 2),
    }
    if args.model_requests:
        ratios["model_rps@32_over_model_rps@1"] = round(
            r("model", high)["requests_per_s"] / r("model", low)["requests_per_s"], 2
        )
    goals = {
        "cached_p50_over_healthz_p50@1": "<= 1.3",
        "rules_p50_minus_healthz_p50_ms@1": "<= 8",
        "rules_rps_over_echo_rps@32": ">= 0.6",
        "model_rps@32_over_model_rps@1": ">= 4",
    }
    print("\nGoals, as ratios within this run\n")
    for name, value in ratios.items():
        print(f"  {name:<36} {value:>7}   (goal {goals[name]})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "ingress": mode,
        "paths": results,
        "stages_ms": dict(breakdown),
        "cached_stages_ms": dict(cached_breakdown),
        "ratios": ratios,
        "model_batch_sweep": batch_sweep,
    }
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
