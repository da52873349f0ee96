"""Directory load time at national scale: a first load, the same file again, and a churned next snapshot.

Writes a CNAPS file of the real sample plus ``--synthetic`` generated branches (165k rows by default, the
size of the national directory), and snapshot B made from it by ``serve_app.directory.churn`` (5 % retired,
2 % renamed, 1 % moved, 3 % new). Each load runs on a fresh database of one embedded PostgreSQL:

- ``first``: A into an empty directory;
- ``same``: A again (nothing changes);
- ``churn``: B over A.

With ``--compare-with REF`` the same steps run first on that git revision of the project (a worktree, in a
subprocess: the loader of that revision; before snapshots, a load only upserted), and the table shows both
side by side with ratios. Prints a table; writes ``benchmarks/results/directory_load.json``.

    python benchmarks/directory_load.py [--synthetic 150000] [--compare-with 9511a1e]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Only what every revision compared has (the subprocess of --compare-with imports this file from there).
from serve_app.db.migrate import apply_migrations
from serve_app.db.pool import connect_admin
from serve_app.directory.loader import load_directory
from serve_app.ops.embedded import EmbeddedPostgres

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("first", "same", "churn")


def write_snapshots(folder: Path, synthetic: int) -> tuple[Path, Path]:
    """Snapshot A (the sample's CNAPS rows plus ``synthetic`` generated branches written as CNAPS rows) and
    snapshot B made from it, as files in ``folder``."""
    from serve_app.directory.churn import churn, read_rows, write_rows
    from serve_app.directory.records import demo_cnaps_path, pboc_cities
    from serve_app.directory.synthetic import synthetic_branches

    rows = read_rows(demo_cnaps_path())
    taken_codes = {row["BankCode"] for row in rows}
    taken_names = {row["LName"] for row in rows}
    cities = pboc_cities()
    for record in synthetic_branches(synthetic, taken_codes, taken_names):
        city = cities[record.city_code]
        rows.append({
            "LName": record.name, "BankCode": record.code, "BankName": record.bank_name, "BankId": "",
            "CityCode": record.city_code, "CityName": city["CityName"], "ProvinceName": city["ProvinceName"],
            "ProvinceCode": "",
        })  # fmt: skip
    return write_rows(folder / "a.csv", rows), write_rows(folder / "b.csv", churn(rows).rows)


async def measure(folder: Path, snapshot_a: Path, snapshot_b: Path) -> dict:
    """Seconds per step with the loader importable here (this tree, or the one on PYTHONPATH)."""
    server = EmbeddedPostgres(folder / "postgres")
    url = server.start()
    seconds = {}
    try:
        conn = await connect_admin(url)
        try:
            await apply_migrations(conn)
            for step, path in zip(STEPS, (snapshot_a, snapshot_a, snapshot_b), strict=True):
                started = time.perf_counter()
                await load_directory(conn, path)
                seconds[step] = round(time.perf_counter() - started, 2)
            branches = await conn.fetchval("SELECT count(*) FROM branches")
        finally:
            await conn.close()
    finally:
        server.stop()
    rows = sum(1 for _ in snapshot_a.open(encoding="utf-8")) - 1
    return {"rows": rows, "branches_after": branches, "seconds": seconds}


def measure_at(ref: str, snapshot_a: Path, snapshot_b: Path) -> dict:
    """``measure`` with the loader of git revision ``ref`` (this script run from here, that tree first on
    the import path)."""
    with tempfile.TemporaryDirectory(prefix="serve-app-load-ref-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True,
                       capture_output=True)  # fmt: skip
        try:
            out = Path(tmp) / "out.json"
            env = os.environ | {"PYTHONPATH": str(tree)}
            command = [sys.executable, __file__, "--only-here", str(out), str(snapshot_a), str(snapshot_b)]
            subprocess.run(command, check=True, env=env)
            return json.loads(out.read_text())
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", type=int, default=150_000)
    parser.add_argument("--compare-with", metavar="REF", help="also run the loader of this git revision")
    parser.add_argument("--only-here", type=Path, nargs=3, help=argparse.SUPPRESS)  # --compare-with's subprocess
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "directory_load.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="serve-app-load-") as tmp:
        if args.only_here:
            out, snapshot_a, snapshot_b = args.only_here
            out.write_text(json.dumps(asyncio.run(measure(Path(tmp), snapshot_a, snapshot_b))))
            return
        snapshot_a, snapshot_b = write_snapshots(Path(tmp), args.synthetic)
        before = measure_at(args.compare_with, snapshot_a, snapshot_b) if args.compare_with else None
        after = asyncio.run(measure(Path(tmp), snapshot_a, snapshot_b))
    report = {"synthetic": args.synthetic, "after": after, "before": before, "before_ref": args.compare_with}
    print(f"\nDirectory loads of {after['rows']:,} CNAPS rows (seconds; one embedded PostgreSQL, this machine)\n")
    header = f"{'step':>8} {'snapshots':>10}" + (f" {args.compare_with or '':>10} {'ratio':>7}" if before else "")
    print(header)
    print("-" * len(header))
    for step in STEPS:
        line = f"{step:>8} {after['seconds'][step]:>10.2f}"
        if before:
            then = before["seconds"][step]
            line += f" {then:>10.2f} {after['seconds'][step] / then:>6.2f}x"
        print(line)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
