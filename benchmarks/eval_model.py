"""Does the model path earn its place? Rules alone against rules + each demo adapter and the base alone.

Cases are generated from records of the directory's *eval* half, which the adapters never trained on
(``is_training_record``), with the operators of ``benchmarks/noise.py`` — every noise type of the verdict
evaluation, its eval-split natural questions, and English lines — none of which is how the training
examples are written. A share of the target records is deleted from a scratch directory first, so some
queries ask for branches that are absent. Each noise type's cases are split in three: one third
(*tune*) is used only to choose the fallback adapter and threshold, the rest (*test*) is what the tables
report.

Conditions, each through the service's own pipeline (``combine``, retrieval, verdicts):

- ``rules``: no model (the service with ``model: null`` and no default adapter);
- ``base``: the base model without an adapter, asked for every query;
- ``job_22`` / ``job_23``: that adapter asked for every query (a tenant naming it);
- ``fallback``: rules, with the chosen adapter asked only when the rules' confidence is under the chosen
  threshold (``default_adapter`` / ``model_fallback_threshold``), as chosen on the tune third.

The model's answers are generated once per (query, adapter) by HFEngine in batches — the engine a CPU
replica runs, with the replica's prompt, token limit and parser — and handed to the pipeline as its
model reader. Then each engine (HFEngine, VLLMEngine) runs the same requests with the adapters mixed:
start-up, one at a time, and in one batch, and whether the two engines' greedy outputs agree.

Each adapter is prompted and read in the answer format its folder names (``serve_app.models.task``), and
the decoding steps each answer took (its tokens and the end of sequence) are reported per condition.
``--models DIR`` measures adapters already built there (say, ones trained for an older answer format)
instead of building the demo; ``--dtype`` and ``--quantization`` set the engine the answers are read with.

    python benchmarks/eval_model.py [--per-type 24] [--engines hf,vllm] [--models DIR]
        [--dtype float32|bfloat16] [--quantization none|int8]

Prints tables; writes ``benchmarks/results/eval_model.json`` and ``benchmarks/results/eval_model.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_verdict import make_cases, remove_absent
from noise import model_operators
from scratch import sample_directory

from serve_app.config import ExtractorTunables, ModelTunables
from serve_app.db.pool import connect_admin, create_pool
from serve_app.models.adapters import validate_adapter
from serve_app.models.demo import DEMO_ADAPTERS, DemoModel, make_demo_model
from serve_app.models.engine import AdapterSpec, GenerationRequest
from serve_app.models.hf_engine import HFEngine
from serve_app.models.paths import ADAPTER_DIR, DEMO_BASE_DIR
from serve_app.models.task import ModelAnswer, format_for
from serve_app.normalize import normalize
from serve_app.query.pipeline import QueryPipeline, build_pipeline
from serve_app.schemas import QueryRequest
from serve_app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: What the base alone is called here; the service has no way to ask for it, so only this benchmark does.
BASE = "base"
#: Rules confidences under which the fallback may ask the default adapter.
THRESHOLDS = (0.3, 0.5, 0.7, 0.9, 0.95)
ENTITY_FIELDS = {"bank": "bank_name", "city": "city", "district": "district", "branch": "branch"}
MAX_NEW_TOKENS = ModelTunables().max_new_tokens


def split_tune_test(cases: list[dict]) -> None:
    """Every third case of each noise type tunes the fallback; the others are reported."""
    seen: dict[str, int] = defaultdict(int)
    for case in cases:
        case["part"] = "tune" if seen[case["noise"]] % 3 == 0 else "test"
        seen[case["noise"]] += 1


def request_for(query: str, spec: AdapterSpec | None) -> GenerationRequest:
    """The request a model replica makes for ``query`` with ``spec`` (None: the base alone)."""
    return format_for(spec).request(query, None if spec is None else spec.name, MAX_NEW_TOKENS)


async def generate_answers(
    base: Path, specs: dict[str, AdapterSpec], queries: list[str], args: argparse.Namespace
) -> tuple[dict[tuple[str, str], ModelAnswer], dict[str, float], dict[str, dict]]:
    """HFEngine's answer to every query with every adapter and with the base alone: ``(adapter, query)``
    → answer, the seconds each adapter took, and the decoding steps per answer (median, p99)."""
    engine = HFEngine(base, dtype=args.dtype, quantization=args.quantization)
    await engine.start()
    for spec in specs.values():
        await engine.load_adapter(spec)
    answers: dict[tuple[str, str], ModelAnswer] = {}
    seconds = {}
    steps: dict[str, dict] = {}
    try:
        for key in [*([] if args.no_base else [BASE]), *specs]:
            spec = specs.get(key)
            started = time.perf_counter()
            counts = []
            for first in range(0, len(queries), args.batch_size):
                chunk = queries[first : first + args.batch_size]
                results = await engine.generate([request_for(q, spec) for q in chunk])
                for query, result in zip(chunk, results, strict=True):
                    answers[(key, query)] = format_for(spec).read(result.text, result.finished)
                    counts.append(result.decoding_steps)
            seconds[key] = round(time.perf_counter() - started, 1)
            counts.sort()
            steps[key] = {"median": statistics.median(counts), "p99": counts[int(0.99 * (len(counts) - 1))]}
            print(f"  {key}: {len(queries)} answers in {seconds[key]} s, {steps[key]} tokens each", flush=True)
    finally:
        await engine.shutdown()
    return answers, seconds, steps


async def run_condition(pipeline: QueryPipeline, cases: list[dict], model: str | None) -> list[dict]:
    rows = []
    for case in cases:
        result = await pipeline.run(QueryRequest(query=case["query"], top_k=5, model=model))
        top = result.matches[0] if result.matches else None
        gold = case["gold"]
        row = {
            "query": case["query"],
            "read": result.entities.model_dump(exclude_none=True, exclude={"bank_code", "province"}),
            "noise": case["noise"],
            "part": case["part"],
            "present": bool(case["truth"]),
            "match": result.verdict == "match",
            "right": top is not None and top.code in case["truth"],
            "asked": result.model is not None,
            "valid": result.model is not None and result.model_error is None,
            "changed": result.source == "model",
        }
        read = result.entities.model_dump()
        row |= {field: read[field] == (gold[column] or None) for field, column in ENTITY_FIELDS.items()}
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict:
    present = [r for r in rows if r["present"]]
    absent = [r for r in rows if not r["present"]]
    matches = [r for r in rows if r["match"]]
    asked = [r for r in rows if r["asked"]]

    def share(part: list, whole: list) -> float | None:
        return round(len(part) / len(whole), 4) if whole else None

    return {
        "n": len(rows),
        "absent": len(absent),
        "asked": share(asked, rows),
        "invalid": share([r for r in asked if not r["valid"]], asked),
        "changed": share([r for r in rows if r["changed"]], rows),
        **{field: share([r for r in rows if r[field]], rows) for field in ENTITY_FIELDS},
        "top1_right": share([r for r in present if r["right"]], present),
        "match_precision": share([r for r in matches if r["present"] and r["right"]], matches),
        "present_match_right": share([r for r in present if r["match"] and r["right"]], present),
        "absent_match": share([r for r in absent if r["match"]], absent),
    }


def by_noise(rows: list[dict]) -> dict:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["noise"]].append(row)
    return {noise: summarize(group) for noise, group in groups.items()} | {"ALL": summarize(rows)}


def differences(rows: list[dict], rules: list[dict], examples: int = 12) -> dict:
    """Present cases this condition gets right and the rules do not (wins), and the reverse (losses)."""
    pairs = [(mine, theirs) for mine, theirs in zip(rows, rules, strict=True) if mine["present"]]
    wins = [m for m, r in pairs if m["right"] and not r["right"]]
    losses = [(m, r) for m, r in pairs if r["right"] and not m["right"]]
    return {
        "wins": len(wins),
        "losses": len(losses),
        "win_examples": [{"query": m["query"], "read": m["read"]} for m in wins[:examples]],
        "loss_examples": [
            {"query": m["query"], "read": m["read"], "rules_read": r["read"]} for m, r in losses[:examples]
        ],
    }


def model_alone(answers: dict, cases: list[dict], key: str) -> dict:
    """The model's own reading, before combining: valid answers and per-field exact matches with the record."""
    counts: dict[str, int] = defaultdict(int)
    for case in cases:
        answer = answers[(key, normalize(case["query"]))]
        counts["n"] += 1
        if answer.entities is None:
            continue
        counts["valid"] += 1
        read = answer.entities.model_dump()
        for field, column in ENTITY_FIELDS.items():
            counts[field] += read[field] == (case["gold"][column] or None)
    n = counts["n"] or 1
    return {"n": counts["n"]} | {k: round(counts[k] / n, 4) for k in ("valid", *ENTITY_FIELDS)}


def choose_fallback(sweep: dict, rules: dict) -> dict:
    """The (adapter, threshold) with the most right matches on the tune third whose match precision and
    absent→match are no worse than the rules' there; None when no fallback beats the rules."""
    best = None
    for (adapter, threshold), summary in sweep.items():
        safe = (summary["match_precision"] or 0) >= (rules["match_precision"] or 0) and (
            summary["absent_match"] or 0
        ) <= (rules["absent_match"] or 0)
        gain = summary["present_match_right"] - rules["present_match_right"]
        if safe and gain > 0 and (best is None or gain > best["gain"]):
            best = {"adapter": adapter, "threshold": threshold, "gain": round(gain, 4)}
    return best or {"adapter": None, "threshold": None, "gain": 0.0}


async def engine_latency(kind: str, base: Path, specs: dict[str, AdapterSpec], queries: list[str]) -> dict:
    """Start-up, one request at a time, and one batch of all ``queries``, adapters taken in turn."""
    names = list(specs)
    requests = [request_for(q, specs[names[i % len(names)]]) for i, q in enumerate(queries)]
    started = time.perf_counter()
    if kind == "hf":
        engine = HFEngine(base)
    else:
        from serve_app.models.vllm_engine import VLLMEngine

        # Unconstrained decoding, so that its greedy outputs are comparable with HFEngine's.
        engine = VLLMEngine(base, max_adapters=len(specs), structured_output=False, memory_utilization=0.3)
    await engine.start()
    for spec in specs.values():
        await engine.load_adapter(spec)
    startup = time.perf_counter() - started
    await engine.generate(requests[:2])  # warm-up
    singles = []
    for request in requests[:8]:
        mark = time.perf_counter()
        await engine.generate([request])
        singles.append(time.perf_counter() - mark)
    mark = time.perf_counter()
    results = await engine.generate(requests)
    batch_seconds = time.perf_counter() - mark
    await engine.shutdown()
    return {
        "engine": kind,
        "startup_s": round(startup, 1),
        "single_p50_ms": round(statistics.median(singles) * 1000, 1),
        "single_per_s": round(len(singles) / sum(singles), 2),
        "batch": len(requests),
        "batch_s": round(batch_seconds, 2),
        "batch_per_s": round(len(requests) / batch_seconds, 2),
        "mean_new_tokens": round(statistics.mean(len(r.token_ids) for r in results), 1),
        "valid": round(
            sum(format_for(specs[r.adapter]).read(r.text, r.finished).valid for r in results) / len(results), 4
        ),
        "token_ids": [list(r.token_ids) for r in results],
    }


async def evaluate(args: argparse.Namespace, demo: DemoModel) -> dict:
    specs = {name: validate_adapter(name, name, demo.adapter_root, demo.base) for name in DEMO_ADAPTERS}
    async with sample_directory("serve-app-model-") as (url, records):
        cases = make_cases(records, "eval", args.per_type, args.absent_share, args.seed, model_operators())
        split_tune_test(cases)
        conn = await connect_admin(url)
        deleted = await remove_absent(conn, cases)
        await conn.close()
        queries = sorted({normalize(case["query"]) for case in cases})
        print(f"{len(cases)} cases ({len(deleted)} absent); generating the model's answers …", flush=True)
        answers, generation_s, answer_tokens = await generate_answers(demo.base, specs, queries, args)

        async def replay(normalized: str, adapter: str) -> ModelAnswer:
            return answers[(adapter, normalized)]

        pool = await create_pool(url)
        pipeline = await build_pipeline(pool, replay)
        rows = {"rules": await run_condition(pipeline, cases, None)}
        for key in [*([] if args.no_base else [BASE]), *specs]:
            rows[key] = await run_condition(pipeline, cases, key)
        tune = [c for c in cases if c["part"] == "tune"]
        sweep = {}
        for adapter in specs:
            for threshold in THRESHOLDS:
                pipeline.extraction.reconfigure(
                    ExtractorTunables(model_fallback_threshold=threshold, default_adapter=adapter)
                )
                sweep[(adapter, threshold)] = summarize(await run_condition(pipeline, tune, None))
        pipeline.extraction.reconfigure(ExtractorTunables())
        rules_tune = summarize([r for r in rows["rules"] if r["part"] == "tune"])
        chosen = choose_fallback(sweep, rules_tune)
        if chosen["adapter"] is not None:
            pipeline.extraction.reconfigure(
                ExtractorTunables(model_fallback_threshold=chosen["threshold"], default_adapter=chosen["adapter"])
            )
            rows["fallback"] = await run_condition(pipeline, cases, None)
        await pool.close()

    test = [c for c in cases if c["part"] == "test"]
    test_rows = {name: [r for r in found if r["part"] == "test"] for name, found in rows.items()}
    engines = [await engine_latency(kind, demo.base, specs, queries[: args.latency_batch]) for kind in args.engines]
    reference = engines[0]["token_ids"] if engines else []
    for row in engines:
        tokens = row.pop("token_ids")
        row["same_tokens_as_" + args.engines[0]] = round(
            sum(a == b for a, b in zip(tokens, reference, strict=True)) / len(tokens), 4
        )
    return {
        "per_type": args.per_type,
        "absent_share": args.absent_share,
        "seed": args.seed,
        "cases": {"all": len(cases), "tune": len(tune), "test": len(test), "absent": len(deleted)},
        "engine": {"dtype": args.dtype, "quantization": args.quantization},
        "generation_s": generation_s,
        "answer_tokens": answer_tokens,
        "conditions": {name: by_noise(test_rows[name]) for name in rows},
        "against_rules": {name: differences(test_rows[name], test_rows["rules"]) for name in rows if name != "rules"},
        "model_alone": {key: model_alone(answers, test, key) for key in (BASE, *specs) if (key, queries[0]) in answers},
        "fallback_sweep_tune": [{"adapter": a, "threshold": t} | summary for (a, t), summary in sweep.items()]
        + [{"adapter": None, "threshold": None} | rules_tune],
        "fallback_chosen": chosen,
        "engines": engines,
    }


def print_report(report: dict) -> None:
    def pct(value: float | None) -> str:
        return "   n/a" if value is None else f"{value:6.1%}"

    conditions = report["conditions"]
    cases = report["cases"]
    print(f"\nModel path on the TEST part: {cases['test']} queries of never-trained-on records "
          f"({cases['absent']} of all {cases['all']} cases ask for absent branches)\n")  # fmt: skip
    header = (
        f"{'condition':>9} {'asked':>6} {'invalid':>7} {'changed':>7} | {'bank':>6} {'city':>6} {'distr.':>6} "
        f"{'branch':>6} | {'top-1':>6} {'precision':>9} {'present→match✓':>14} {'absent→match':>12}"
    )
    print(header)
    print("-" * len(header))
    for name, groups in conditions.items():
        s = groups["ALL"]
        print(
            f"{name:>9} {pct(s['asked'])} {pct(s['invalid']):>7} {pct(s['changed']):>7} | {pct(s['bank'])} "
            f"{pct(s['city'])} {pct(s['district'])} {pct(s['branch'])} | {pct(s['top1_right'])} "
            f"{pct(s['match_precision']):>9} {pct(s['present_match_right']):>14} {pct(s['absent_match']):>12}"
        )
    print("\npresent→match✓ by noise type (right matches among queries whose branch is present)\n")
    names = list(conditions)
    print(f"{'noise':>17} {'n':>4} " + " ".join(f"{n:>9}" for n in names))
    for noise in conditions["rules"]:
        cells = " ".join(f"{pct(conditions[n][noise]['present_match_right']):>9}" for n in names)
        print(f"{noise:>17} {conditions['rules'][noise]['n']:>4} {cells}")
    print("\nAgainst the rules, on present branches: right only with the model (wins) / only without (losses)\n")
    for name, d in report["against_rules"].items():
        print(f"{name:>9}: {d['wins']} wins, {d['losses']} losses")
    print("\nThe model alone (its JSON before combining), per field exact match with the record\n")
    for key, s in report["model_alone"].items():
        fields = "  ".join(f"{f} {pct(s[f])}" for f in ENTITY_FIELDS)
        print(f"{key:>9}: valid {pct(s['valid'])}  {fields}")
    chosen = report["fallback_chosen"]
    print(f"\nFallback chosen on the tune part: default_adapter={chosen['adapter']}, "
          f"model_fallback_threshold={chosen['threshold']} (+{chosen['gain']:.1%} present→match✓ there)")  # fmt: skip
    print(f"\nDecoding steps per answer (median, p99): {report['answer_tokens']}")
    if not report["engines"]:
        return
    print("\nEngines (CPU, float32), the adapters mixed\n")
    reference = next(k for k in report["engines"][0] if k.startswith("same_tokens_as_"))
    header = (
        f"{'engine':>6} {'start s':>7} {'1-at-a-time p50 ms':>18} {'req/s':>6} {'batch':>5} {'batch s':>7} "
        f"{'req/s':>6} {'tokens':>6} {'valid':>6} {reference:>18}"
    )
    print(header)
    print("-" * len(header))
    for e in report["engines"]:
        print(
            f"{e['engine']:>6} {e['startup_s']:>7} {e['single_p50_ms']:>18} {e['single_per_s']:>6} {e['batch']:>5} "
            f"{e['batch_s']:>7} {e['batch_per_s']:>6} {e['mean_new_tokens']:>6} {pct(e['valid'])} "
            f"{pct(e[reference]):>18}"
        )


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    conditions = report["conditions"]
    noises = list(conditions["rules"])
    width = 0.8 / len(conditions)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    for i, (name, groups) in enumerate(conditions.items()):
        values = [groups[n]["present_match_right"] or 0 for n in noises]
        ax.bar(np.arange(len(noises)) + i * width, values, width, label=name)
    ax.set_xticks(np.arange(len(noises)) + width * (len(conditions) - 1) / 2, noises, rotation=30, ha="right")
    ax.set(ylabel="present → right match", ylim=(0, 1.05))
    ax.set_title("Right matches by noise type: rules alone vs rules + model (never-trained-on records)")
    ax.legend(fontsize=8, ncol=len(conditions))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-type", type=int, default=24)
    parser.add_argument("--absent-share", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--latency-batch", type=int, default=32)
    parser.add_argument("--engines", type=lambda s: [e for e in s.split(",") if e], default=["hf", "vllm"])
    parser.add_argument("--models", type=Path, help="use the base and adapters built in this models folder")
    parser.add_argument("--no-base", action="store_true", help="skip the base-alone condition (96 tokens a query)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--quantization", default="none", choices=["none", "int8"])
    parser.add_argument("--json", type=Path, default=RESULTS / "eval_model.json")
    parser.add_argument("--plot", type=Path, default=RESULTS / "eval_model.png")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    if args.models:
        adapters = {name: args.models / ADAPTER_DIR / name for name in DEMO_ADAPTERS}
        demo = DemoModel(args.models / DEMO_BASE_DIR, args.models / ADAPTER_DIR, adapters)
    else:
        demo = make_demo_model(Settings().models_dir)  # built once; reused when already there
    report = asyncio.run(evaluate(args, demo))
    print_report(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2))
    plot(report, args.plot)
    print(f"\nwrote {args.json} and {args.plot}")


if __name__ == "__main__":
    main()
