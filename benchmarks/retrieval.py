"""Retrieval latency at 15k and 150k+ rows, side by side in one run, with the query plans used.

Starts a real embedded PostgreSQL (or uses SERVE_APP_DATABASE_URL's server), builds two databases (the
real sample; the sample plus 150k synthetic rows), and runs the same 1000 mixed queries against each
over a warm pool, one at a time. Queries are drawn from the directory itself, with the entity mix an
extractor produces: bank+city (most), bank+district, bank only, branch keyword only.

    python benchmarks/retrieval.py [--queries 1000] [--synthetic 150000] [--json benchmarks/results/retrieval.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from serve_app.db.migrate import apply_migrations
from serve_app.db.pool import connect_admin, create_pool
from serve_app.directory.loader import load_directory
from serve_app.directory.records import demo_cnaps_path
from serve_app.ops.embedded import EmbeddedPostgres
from serve_app.query.retrieval import BranchRepository, plan_for
from serve_app.schemas import Entities

#: (share of queries, which entities the query carries)
MIX = (
    (0.60, "bank+city"),
    (0.15, "bank+district"),
    (0.15, "bank"),
    (0.10, "branch"),
)


def make_queries(rows: list[asyncpg.Record], count: int, seed: int = 7) -> list[tuple[str, Entities, str]]:
    """(normalized text, entities, gold code) triples; deterministic for a seed."""
    rng = random.Random(seed)
    kinds = [kind for share, kind in MIX for _ in range(round(share * 100))]
    queries = []
    for row in rng.sample(rows, count):
        kind = rng.choice(kinds)
        if kind == "bank+district" and not row["district"]:
            kind = "bank+city"
        branch = row["branch"] or None
        entities = {
            "bank+city": Entities(bank=row["bank_name"], city=row["city"], branch=branch),
            "bank+district": Entities(bank=row["bank_name"], district=row["district"], branch=branch),
            "bank": Entities(bank=row["bank_name"], branch=branch),
            "branch": Entities(branch=branch),
        }[kind]
        queries.append((row["search_name"], entities, row["code"], kind))
    return queries


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def build_database(server_url: str, name: str, synthetic: int) -> tuple[str, float]:
    admin = await asyncpg.connect(server_url.rsplit("/", 1)[0] + "/postgres")
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = server_url.rsplit("/", 1)[0] + f"/{name}"
    conn = await connect_admin(url)
    started = time.perf_counter()
    await apply_migrations(conn)
    await load_directory(conn, demo_cnaps_path(), synthetic=synthetic)
    await conn.execute("ANALYZE")
    load_seconds = time.perf_counter() - started
    await conn.close()
    return url, load_seconds


async def measure(url: str, queries_count: int) -> dict:
    pool = await create_pool(url)
    repository = BranchRepository(pool)
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT code, bank_name, city, district, branch, search_name FROM branches")
        total_rows = len(rows)
    queries = make_queries(rows, queries_count)
    for text, entities, _, _ in queries:  # warm the pool, caches and prepared statements
        await repository.search(entities, text)
    latencies: dict[str, list[float]] = {kind: [] for _, kind in MIX}
    hits = 0
    for text, entities, gold, kind in queries:
        started = time.perf_counter()
        matches = (await repository.search(entities, text)).candidates
        latencies[kind].append((time.perf_counter() - started) * 1000)
        hits += bool(matches) and matches[0].code == gold
    everything = [v for values in latencies.values() for v in values]
    sample_entities = Entities(bank="中国农业银行", city="北京市", branch="定福庄支行")
    plans = {
        "bank": await repository.explain("bank", sample_entities, "中国农业银行北京定福庄支行"),
        "bank_place": await repository.explain("bank_place", sample_entities, "中国农业银行北京定福庄支行"),
        "trgm": await repository.explain("trgm", Entities(branch="江油西山支行"), "华夏银行江油西山支行"),
    }
    await pool.close()

    def summary(values: list[float]) -> dict:
        return {
            "n": len(values),
            "p50_ms": round(statistics.median(values), 3),
            "p99_ms": round(percentile(values, 0.99), 3),
            "mean_ms": round(statistics.fmean(values), 3),
        }

    return {
        "rows": total_rows,
        "overall": summary(everything),
        "by_kind": {kind: summary(values) for kind, values in latencies.items() if values},
        "top1_accuracy": round(hits / len(queries), 4),
        "plans": plans,
        "first_plan_by_kind": {kind: plan_for(q[1])[0] for kind in latencies for q in queries if q[3] == kind},
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--synthetic", type=int, default=150_000)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/retrieval.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="serve-app-bench-") as home:
        server = EmbeddedPostgres(Path(home) / "postgres")
        url = server.start()
        try:
            results = {}
            for label, synthetic in (("15k", 0), ("150k", args.synthetic)):
                db_url, load_seconds = await build_database(url, f"bench_{label}", synthetic)
                results[label] = await measure(db_url, args.queries) | {"load_seconds": round(load_seconds, 2)}
        finally:
            server.stop()

    print(f"\nRetrieval latency, {args.queries} mixed queries, one at a time over a warm asyncpg pool\n")
    header = f"{'directory':>10} {'rows':>8} {'kind':>14} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}"
    print(header)
    print("-" * len(header))
    for label, result in results.items():
        for kind, stats in [("ALL", result["overall"]), *result["by_kind"].items()]:
            print(
                f"{label:>10} {result['rows']:>8} {kind:>14} {stats['n']:>5} "
                f"{stats['p50_ms']:>8.2f} {stats['p99_ms']:>8.2f} {stats['mean_ms']:>8.2f}"
            )
    small, large = results["15k"]["overall"], results["150k"]["overall"]
    print(
        f"\n150k / 15k ratio: p50 {large['p50_ms'] / small['p50_ms']:.2f}x, "
        f"p99 {large['p99_ms'] / small['p99_ms']:.2f}x"
    )
    for label, result in results.items():
        print(f"{label}: top-1 on gold entities {result['top1_accuracy']:.1%}, load {result['load_seconds']}s")
    plans = results["150k"]["plans"]
    print("\nEXPLAIN ANALYZE at 150k, bank + city (statement bank, the first tried):\n" + plans["bank"])
    print("\nEXPLAIN ANALYZE at 150k, bank + city when bank finds none (bank_place):\n" + plans["bank_place"])
    print("\nEXPLAIN ANALYZE at 150k, branch keyword only:\n" + plans["trgm"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, ensure_ascii=False, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    asyncio.run(main())
