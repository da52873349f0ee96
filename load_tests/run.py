"""Run a Locust load test against a running app, watch Serve scale, and write a report.

    serve-app up                                    # terminal 1 (or any running deployment)
    python load_tests/run.py --step-seconds 30 --max-users 32 --deploy-at 120   # terminal 2

Writes to ``--out``: Locust's CSV files and HTML report, ``replicas.csv`` (RUNNING replicas per
deployment and the autoscaler's target for it, every 0.5 s), ``steps.csv`` and ``summary.md`` (p50/p95/p99,
rate and failures per load step; each upscale: the step before it, the autoscaler's decision and the new
replica RUNNING, against ``upscale_delay_s``) and ``report.png`` (latency percentiles, throughput and
users, replicas over time). ``--deploy-at T`` runs ``serve deploy`` at T seconds with a copy of
``--config`` whose Ingress ``user_config`` differs (a live-tunable change in the middle of the run).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SAMPLE_S = 0.5


def sample_replicas(app: str, out: Path, stop: threading.Event, started: float) -> None:
    """Every ``SAMPLE_S``: each deployment's RUNNING replicas and the autoscaler's target for it."""
    import ray
    from ray.serve._private import api as serve_private

    ray.init(address="auto", log_to_driver=False, logging_level="ERROR")
    client = serve_private.serve_start()
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["seconds", "deployment", "running_replicas", "target_replicas"])
        while not stop.is_set():
            try:
                deployments = client.get_serve_details()["applications"][app]["deployments"]
                for name, deployment in deployments.items():
                    running = sum(1 for r in deployment["replicas"] if r["state"] == "RUNNING")
                    writer.writerow([round(time.time() - started, 2), name, running, deployment["target_num_replicas"]])
                handle.flush()
            except Exception as exc:  # noqa: BLE001 - keep sampling through transient controller errors
                print(f"replica sampling: {exc}", file=sys.stderr)
            stop.wait(SAMPLE_S)


def step_starts(history: Path, started: float) -> list[tuple[float, int]]:
    """(seconds since ``started``, users) at each change of Locust's user count."""
    changes: list[tuple[float, int]] = []
    for row in csv.DictReader(history.open()):
        if row["Name"] == "Aggregated" and (not changes or changes[-1][1] != int(row["User Count"])):
            changes.append((int(row["Timestamp"]) - started, int(row["User Count"])))
    return changes


def reactions(replicas: Path, steps: list[tuple[float, int]], upscale_delay_s: dict[str, float]) -> list[dict]:
    """Each upscale: the load step before it, when the autoscaler raised its target (the decision) and
    when the new replica was RUNNING (taking traffic), in seconds."""
    rows: dict[str, list[dict]] = {}
    for row in csv.DictReader(replicas.open()):
        rows.setdefault(row["deployment"], []).append(row)
    found = []
    for name, samples in sorted(rows.items()):
        previous = int(samples[0]["target_replicas"])
        for i, sample in enumerate(samples):
            target = int(sample["target_replicas"])
            if target > previous:
                decided = float(sample["seconds"])
                step = max((s for s in steps if s[0] <= decided), default=(0.0, 0))
                running = next((float(x["seconds"]) for x in samples[i:] if int(x["running_replicas"]) >= target), None)
                found.append(
                    {
                        "deployment": name,
                        "replicas": f"{previous} → {target}",
                        "step_at_s": round(step[0], 1),
                        "users": step[1],
                        "decision_after_step_s": round(decided - step[0], 1),
                        "upscale_delay_s": upscale_delay_s.get(name),
                        "serving_after_decision_s": None if running is None else round(running - decided, 1),
                    }
                )
            previous = target
    return found


def deploy_changed(config: Path, out: Path, dashboard: str) -> None:
    data = yaml.safe_load(config.read_text())
    for deployment in data["applications"][0].get("deployments", []):
        if deployment["name"] == "Ingress":
            deployment["user_config"]["result_cache_ttl_s"] = (
                deployment["user_config"].get("result_cache_ttl_s", 3600) + 1
            )
    changed = out / "changed-config.yaml"
    changed.write_text(yaml.safe_dump(data, sort_keys=False))
    serve = Path(sys.executable).with_name("serve")  # the venv's, whether or not the venv is activated
    subprocess.run([str(serve), "deploy", str(changed), "-a", dashboard], check=True)


def step_rows(history: Path) -> list[dict]:
    """Per load step (a run of equal user counts): p50/p95/p99, mean rate and failures."""
    rows = [r for r in csv.DictReader(history.open()) if r["Name"] == "Aggregated" and r["User Count"] != "0"]
    steps: list[dict] = []
    for row in rows:
        users = int(row["User Count"])
        if not steps or steps[-1]["users"] != users:
            steps.append({"users": users, "rows": []})
        steps[-1]["rows"].append(row)
    summary = []
    for index, step in enumerate(steps):
        measured = [r for r in step["rows"] if r["50%"] not in ("N/A", "0")]

        def col(name: str, rows=measured) -> float:
            return statistics.median(float(r[name]) for r in rows) if rows else 0.0

        summary.append(
            {
                "step": index + 1,
                "users": step["users"],
                "seconds": len(step["rows"]),
                "requests_per_s": round(statistics.fmean(float(r["Requests/s"]) for r in step["rows"]), 1),
                "p50_ms": col("50%"),
                "p95_ms": col("95%"),
                "p99_ms": col("99%"),
                "failures": round(sum(float(r["Failures/s"]) for r in step["rows"])),
            }
        )
    return summary


def plot(history: Path, replicas: Path, deploy_at: float | None, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in csv.DictReader(history.open()) if r["Name"] == "Aggregated"]
    start = int(rows[0]["Timestamp"])
    t = [int(r["Timestamp"]) - start for r in rows]

    def series(name: str) -> list[float]:
        return [float(r[name]) if r[name] not in ("N/A", "") else float("nan") for r in rows]

    fig, (latency, rate, scale) = plt.subplots(3, 1, figsize=(11, 10), sharex=True)
    for name in ("50%", "95%", "99%"):
        latency.plot(t, series(name), label=f"p{name[:-1]}")
    latency.set_ylabel("latency (ms)")
    latency.set_yscale("log")
    latency.legend()
    rate.plot(t, series("Requests/s"), label="requests/s")
    rate.plot(t, series("Failures/s"), label="failures/s", color="red")
    users = rate.twinx()
    users.plot(t, series("User Count"), label="users", color="grey", linestyle="--")
    users.set_ylabel("users")
    rate.set_ylabel("per second")
    rate.legend(loc="upper left")
    by_deployment: dict[str, tuple[list, list]] = {}
    for r in csv.DictReader(replicas.open()):
        xs, ys = by_deployment.setdefault(r["deployment"], ([], []))
        xs.append(float(r["seconds"]))
        ys.append(int(r["running_replicas"]))
    for name, (xs, ys) in sorted(by_deployment.items()):
        scale.step(xs, ys, where="post", label=name)
    scale.set_ylabel("running replicas")
    scale.set_xlabel("seconds")
    scale.legend()
    for axis in (latency, rate, scale):
        if deploy_at is not None:
            axis.axvline(deploy_at, color="purple", linestyle=":", label="serve deploy")
    fig.suptitle("serve-app step load: latency, throughput and replicas per deployment")
    fig.tight_layout()
    fig.savefig(out / "report.png", dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="http://127.0.0.1:8000")
    parser.add_argument("--app", default="branch-query")
    parser.add_argument("--config", type=Path, default=HERE.parent / "configs" / "local.yaml")
    parser.add_argument("--dashboard", default="http://127.0.0.1:8265")
    parser.add_argument("--step-seconds", type=int, default=30)
    parser.add_argument("--max-users", type=int, default=32)
    parser.add_argument("--deploy-at", type=float, help="seconds into the run to serve deploy a changed user_config")
    parser.add_argument("--out", type=Path, default=HERE / "results" / time.strftime("%Y%m%d-%H%M%S"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    started = time.time()
    stop = threading.Event()
    sampler = threading.Thread(target=sample_replicas, args=(args.app, args.out / "replicas.csv", stop, started))
    sampler.start()
    env = os.environ | {"LOAD_SHAPE": "step", "MAX_USERS": str(args.max_users), "STEP_SECONDS": str(args.step_seconds)}
    locust = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless", "--host", args.host,
         "--csv", str(args.out / "locust"), "--csv-full-history", "--html", str(args.out / "locust.html"),
         "--only-summary"],
        env=env,
    )  # fmt: skip
    deployed_at = None
    try:
        if args.deploy_at is not None:
            time.sleep(max(0.0, args.deploy_at - (time.time() - started)))
            deployed_at = round(time.time() - started, 1)
            try:
                deploy_changed(args.config, args.out, args.dashboard)
            except (OSError, subprocess.CalledProcessError) as exc:
                print(f"serve deploy failed: {exc}", file=sys.stderr)
                deployed_at = None
        locust.wait()
    finally:
        stop.set()
        sampler.join()

    steps = step_rows(args.out / "locust_stats_history.csv")
    with (args.out / "steps.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(steps[0]))
        writer.writeheader()
        writer.writerows(steps)
    plot(args.out / "locust_stats_history.csv", args.out / "replicas.csv", deployed_at, args.out)
    delays = {
        d["name"]: d.get("autoscaling_config", {}).get("upscale_delay_s")
        for d in yaml.safe_load(args.config.read_text())["applications"][0].get("deployments", [])
    }
    scaled = reactions(args.out / "replicas.csv", step_starts(args.out / "locust_stats_history.csv", started), delays)
    lines = [
        "| step | users | seconds | req/s | p50 ms | p95 ms | p99 ms | failures |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {s['step']} | {s['users']} | {s['seconds']} | {s['requests_per_s']} | {s['p50_ms']:.0f} | "
        f"{s['p95_ms']:.0f} | {s['p99_ms']:.0f} | {s['failures']} |"
        for s in steps
    ]
    if deployed_at is not None:
        lines.append(f"\n`serve deploy` of a changed Ingress user_config at {deployed_at} s.")
    lines += [
        "\nAutoscaling reactions (replicas sampled every 0.5 s):\n",
        "| deployment | replicas | load step at s (users) | decision after the step, s | upscale_delay_s | "
        "new replica RUNNING after the decision, s |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['deployment']} | {r['replicas']} | {r['step_at_s']} ({r['users']}) | {r['decision_after_step_s']} | "
        f"{r['upscale_delay_s']} | {r['serving_after_decision_s']} |"
        for r in scaled
    ]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nreport in {args.out}")
    return locust.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
