"""Extraction + retrieval accuracy by noise type, side by side with a generic-address-parser baseline.

The evaluation set is generated from the real directory sample with the operators in
``benchmarks/noise.py``; each query's right answers are the gold record plus every record the query fits
equally well. Both systems normalize the same way, find the bank the same way and retrieve with the same
repository; they differ only in how they read the place: the gazetteer extractor of this project, or
``cpca`` (a generic Chinese address parser) over the whole text. Also reports extraction latency.

    pip install -e ".[eval]"
    python benchmarks/eval_extraction.py [--per-type 300] [--json benchmarks/results/eval_extraction.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from noise import OPERATORS, build_index, right_answers
from scratch import sample_directory

from serve_app.db.pool import create_pool
from serve_app.normalize import normalize
from serve_app.query.pipeline import build_pipeline
from serve_app.schemas import Entities

FIELDS = ("bank", "province", "city", "district")


def make_cases(records: list[dict], per_type: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    index = build_index(records)
    cases = []
    for operator in OPERATORS:
        produced = 0
        for record in rng.sample(records, len(records)):
            query = operator.apply(record, rng)
            if query is None:
                continue
            cases.append(
                {
                    "noise": operator.name,
                    "query": query,
                    "gold": record,
                    "right": right_answers(operator, record, query, records, index),
                }
            )
            produced += 1
            if produced == per_type:
                break
    return cases


def cpca_entities(extraction_entities: Entities, row: dict) -> Entities:
    """The baseline: same bank and branch keyword, place from cpca."""

    def value(key: str) -> str | None:
        item = row.get(key)
        return None if item is None or (isinstance(item, float) and math.isnan(item)) else str(item)

    province, city, district = value("省"), value("市"), value("区")
    if city in (None, "市辖区") and province in ("北京市", "上海市", "天津市", "重庆市"):
        city = province
    return extraction_entities.model_copy(update={"province": province, "city": city, "district": district})


def score(case: dict, entities: Entities, codes: list[str]) -> dict:
    gold = case["gold"]
    gold_fields = {"bank": gold["bank_name"], "province": gold["province"], "city": gold["city"]}
    gold_fields["district"] = gold["district"]
    return {
        "top1": bool(codes) and codes[0] in case["right"],
        "top5": any(code in case["right"] for code in codes[:5]),
        **{
            field: getattr(entities, field) == gold_fields[field]
            for field in FIELDS
            if field != "district" or gold["district"]
        },
    }


def summarise(rows: list[dict]) -> dict:
    out = {"n": len(rows)}
    for key in ("top1", "top5", *FIELDS):
        values = [row[key] for row in rows if key in row]
        out[key] = round(sum(values) / len(values), 4) if values else None
    return out


async def evaluate(per_type: int, seed: int) -> dict:
    import cpca

    async with sample_directory("serve-app-eval-") as (url, records):
        pool = await create_pool(url)
        pipeline = await build_pipeline(pool)
        cases = make_cases(records, per_type, seed)
        normalized = [normalize(case["query"]) for case in cases]
        parsed = cpca.transform(normalized).to_dict("records")

        ours, baseline, extract_us, normalize_extract_us = [], [], [], []
        for case, text, cpca_row in zip(cases, normalized, parsed, strict=True):
            started = time.perf_counter()
            extraction = pipeline.extractor.extract(normalize(case["query"]))
            normalize_extract_us.append((time.perf_counter() - started) * 1e6)
            started = time.perf_counter()
            extraction = pipeline.extractor.extract(text)
            extract_us.append((time.perf_counter() - started) * 1e6)
            matches = (await pipeline.repository.search(extraction.entities, text)).candidates
            ours.append(score(case, extraction.entities, [m.code for m in matches]) | {"noise": case["noise"]})
            base_entities = cpca_entities(extraction.entities, cpca_row)
            matches = (await pipeline.repository.search(base_entities, text)).candidates
            baseline.append(score(case, base_entities, [m.code for m in matches]) | {"noise": case["noise"]})
        await pool.close()

    result: dict = {"per_type": per_type, "seed": seed, "by_noise": {}}
    for operator in OPERATORS:
        result["by_noise"][operator.name] = {
            "ours": summarise([r for r in ours if r["noise"] == operator.name]),
            "cpca_baseline": summarise([r for r in baseline if r["noise"] == operator.name]),
        }
    result["overall"] = {"ours": summarise(ours), "cpca_baseline": summarise(baseline)}
    result["extract_latency_us"] = {
        "p50": round(statistics.median(extract_us), 1),
        "p99": round(sorted(extract_us)[int(0.99 * (len(extract_us) - 1))], 1),
        "normalize_and_extract_p50": round(statistics.median(normalize_extract_us), 1),
    }
    result["failures"] = [
        {"noise": c["noise"], "query": c["query"], "gold": c["gold"]["code"]}
        for c, r in zip(cases, ours, strict=True)
        if not r["top1"]
    ][:200]
    return result


def print_table(result: dict) -> None:
    print(f"\nExtraction + retrieval accuracy on the real sample ({result['per_type']} queries per noise type)\n")
    header = (
        f"{'noise':>15} {'n':>5} | {'top1':>6} {'top5':>6} {'bank':>6} {'city':>6} {'dist':>6} |"
        f" {'top1':>6} {'top5':>6} {'city':>6} {'dist':>6}"
    )
    print(f"{'':>21} | {'ours (gazetteer extractor)':^34} | {'baseline (cpca for place)':^27}")
    print(header)
    print("-" * len(header))
    rows = [*result["by_noise"].items(), ("ALL", result["overall"])]
    for name, pair in rows:
        ours, base = pair["ours"], pair["cpca_baseline"]

        def pct(value: float | None) -> str:
            return "   n/a" if value is None else f"{value:6.1%}"

        print(
            f"{name:>15} {ours['n']:>5} | {pct(ours['top1'])} {pct(ours['top5'])} {pct(ours['bank'])} "
            f"{pct(ours['city'])} {pct(ours['district'])} | {pct(base['top1'])} {pct(base['top5'])} "
            f"{pct(base['city'])} {pct(base['district'])}"
        )
    overall = result["overall"]
    print(
        f"\ntop-1 ours / baseline: {overall['ours']['top1'] / overall['cpca_baseline']['top1']:.3f}x; "
        f"extraction p50 {result['extract_latency_us']['p50']} µs, p99 {result['extract_latency_us']['p99']} µs "
        f"(normalize + extract p50 {result['extract_latency_us']['normalize_and_extract_p50']} µs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-type", type=int, default=300)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/eval_extraction.json"))
    args = parser.parse_args()
    result = asyncio.run(evaluate(args.per_type, args.seed))
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2, default=list))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
