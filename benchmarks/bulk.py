"""Bulk jobs against the single-query path, rows per second, side by side in one run of one application.

Deploys the application of ``configs/local.yaml`` in a local Ray Serve (embedded PostgreSQL and Valkey in
a temporary folder, the demo directory, no model replicas: both paths answer with the rules, as the
shipped config does, so only the way rows arrive differs), then:

- ``bulk``: one job of ``--rows`` statement lines, uploaded as a CSV with ``POST /api/v1/jobs`` and polled
  until done; rows per second from the upload to the last row (upload, parse, copy-in, work);
- ``single``: ``--single-rows`` lines of the same kind sent to ``POST /api/v1/query`` by a client with the
  same number of requests in flight as the worker answers rows at once (``--concurrency``).

Every line is distinct (noise operators over the directory's records: what people type) and the two sets
are disjoint, so neither path is helped by a cache the other filled, nor by repeats within a file (real
statement files repeat counterparties; the bulk path asks a repeated text once per chunk). Prints a table
and writes JSON.

    python benchmarks/bulk.py [--rows 100000] [--single-rows 10000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from noise import OPERATORS
from serve_latency import deploy_application, drive, prepare_directory

from serve_app.jobs.results import csv_text
from serve_app.ops.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "local.yaml"
RESULTS = ROOT / "benchmarks" / "results"


def distinct_lines(records: list[dict], count: int, seed: int, exclude: set[str]) -> list[str]:
    """``count`` distinct noisy renderings of random records, none of them in ``exclude``."""
    rng = random.Random(seed)
    seen: set[str] = set()
    lines: list[str] = []
    while len(lines) < count:
        text = rng.choice(OPERATORS).apply(rng.choice(records), rng)
        if text and text not in seen and text not in exclude:
            seen.add(text)
            lines.append(text)
    return lines


def application(concurrency: int) -> dict:
    """``configs/local.yaml`` without model replicas, its rate limit lifted (one client drives all the
    load) and its workers answering ``concurrency`` rows at once."""
    app = yaml.safe_load(CONFIG.read_text())["applications"][0]
    app["args"]["model"] = None
    app["deployments"] = [d for d in app["deployments"] if d["name"] != "ModelServer"]
    for deployment in app["deployments"]:
        if deployment["name"] == "Ingress":
            deployment["user_config"] |= {"rate_limit_per_s": 1_000_000, "rate_limit_burst": 1_000_000}
        if deployment["name"] == "EntityExtractor":
            deployment["user_config"] |= {"default_adapter": None}
        if deployment["name"] == "JobWorker":
            deployment["user_config"] |= {"concurrency": concurrency}
    return app


def start_serve(port: int, app: dict) -> None:
    import ray
    from ray import serve

    ray.init(include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    deploy_application(app)


def run_job(base: str, lines: list[str]) -> dict:
    body = "\ufeff" + csv_text([["流水号", "对方行名", "金额"]] + [[str(n), t, "1.00"] for n, t in enumerate(lines)])
    data = body.encode("utf-8")
    started = time.perf_counter()
    created = httpx.post(f"{base}/api/v1/jobs?filename=bench.csv", content=data, timeout=300)
    created.raise_for_status()
    submitted_s = time.perf_counter() - started
    job_id = created.json()["id"]
    while (status := httpx.get(f"{base}/api/v1/jobs/{job_id}", timeout=30).json())["state"] != "done":
        time.sleep(0.5)
    elapsed = time.perf_counter() - started
    mark = time.perf_counter()
    result = httpx.get(f"{base}/api/v1/jobs/{job_id}/result.csv", timeout=300)
    result.raise_for_status()
    download_s = time.perf_counter() - mark
    assert result.content.decode("utf-8-sig").count("\r\n") == len(lines) + 1, "a row is missing"
    return {
        "rows": len(lines),
        "upload_mb": round(len(data) / 2**20, 2),
        "submit_s": round(submitted_s, 2),
        "seconds": round(elapsed, 1),
        "rows_per_s": round(len(lines) / elapsed, 1),
        "worker_rows_per_s": status["rows_per_s"],
        "result_csv_download_s": round(download_s, 2),
        "counts": status["counts"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--single-rows", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path, default=RESULTS / "bulk.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="serve-app-bulk-") as tmp:
        postgres, redis, records = asyncio.run(prepare_directory(Path(tmp)))
        port = free_port()
        try:
            start_serve(port, application(args.concurrency))
            base = f"http://127.0.0.1:{port}"
            bulk_lines = distinct_lines(records, args.rows, seed=1, exclude=set())
            single_lines = distinct_lines(records, args.single_rows, seed=2, exclude=set(bulk_lines))
            single = asyncio.run(drive(f"{base}/api/v1/query", [{"query": t} for t in single_lines], args.concurrency))
            bulk = run_job(base, bulk_lines)
        finally:
            from ray import serve

            serve.shutdown()
            postgres.stop()
            redis.stop()
    ratio = round(bulk["rows_per_s"] / single["requests_per_s"], 2)
    print(f"\n{'path':<8} {'rows':>8} {'rows/s':>8}   notes")
    print(
        f"{'single':<8} {single['requests']:>8} {single['requests_per_s']:>8}   "
        f"POST /api/v1/query, {args.concurrency} in flight, p50 {single['p50_ms']} ms, failures {single['failures']}"
    )
    print(
        f"{'bulk':<8} {bulk['rows']:>8} {bulk['rows_per_s']:>8}   "
        f"one job, upload {bulk['upload_mb']} MB in {bulk['submit_s']} s, result.csv in "
        f"{bulk['result_csv_download_s']} s"
    )
    print(f"\nbulk / single rows per second: {ratio} (goal: > 1)")
    args.json.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "concurrency": args.concurrency,
                "single": single,
                "bulk": bulk,
                "bulk_over_single": ratio,
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )  # fmt: skip
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
