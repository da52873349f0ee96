"""Recovery figures under injected faults, against their goals: the numbers ``tests/test_faults.py`` only
guards loosely (a test must not fail because a shared 2-core machine was slow; a goal must still be met).

Runs the fault tests with ``SERVE_APP_RELIABILITY_REPORT`` set (or reads a report already written, with
``--report``), then prints each figure beside its goal and writes ``benchmarks/results/reliability.json``.

    python benchmarks/reliability.py [--report FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "reliability.json"
#: (fault, figure, goal in seconds): what the service promises after each fault.
GOALS = (
    ("redis_restart", "cache_resumed_after_s", 5.0),
    ("redis_restart", "slowest_s", 5.0),
    ("postgres_restart", "recovered_after_s", 5.0),
    ("postgres_restart", "slowest_s", 5.0),
    ("slow_database", "slowest_during_stall_s", 1.0 + 1.5 + 1.5),  # acquire + statement timeout + the request
    ("model_replica_killed", "slowest_s", 30.0 + 5.0),  # extract_timeout_s + the request
)


def run_fault_tests(report: Path) -> None:
    env = os.environ | {"SERVE_APP_RELIABILITY_REPORT": str(report)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_faults.py")]
    subprocess.run(command, env=env, cwd=ROOT, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, help="a report the fault tests wrote; default: run them now")
    args = parser.parse_args()
    report = args.report or RESULTS
    if args.report is None:
        run_fault_tests(report)
    figures = json.loads(report.read_text())
    print(f"\n{'fault':<22} {'figure':<26} {'measured':>9} {'goal':>7}  met")
    print("-" * 72)
    met = {}
    for fault, figure, goal in GOALS:
        value = figures.get(fault, {}).get(figure)
        ok = value is not None and value <= goal
        met[f"{fault}.{figure}"] = ok
        shown = "-" if value is None else f"{value:.2f}"
        print(f"{fault:<22} {figure:<26} {shown:>9} {goal:>7.1f}  {'yes' if ok else 'NO'}")
    figures["goals_met"] = met
    RESULTS.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
