"""Verdict quality and calibration, on branches that are in the directory and on branches that are not.

Queries are generated from the real directory sample with the noise operators of ``benchmarks/noise.py``
(plus natural questions and statement lines). Records are split in two by a hash of their code: the
*fit* half is the only data the verdict model is ever fit on (``--fit``), the *eval* half is only ever
measured. Natural questions use different phrasings in each half. A share of each half's target records
is deleted from a scratch copy of the directory before any query runs, so those queries ask for branches
that are absent; a case's right answers are the records that fit it as well as its target and remain.
Also measured: licensed banks with no branch in the directory (南京银行 …), codes in queries, and *churn*:
the sample as snapshot A, then snapshot B made from it (``serve_app.directory.churn``: 5 % of codes
retired, 2 % renamed, 1 % moved, 3 % added), with eval-half queries for retired, renamed, moved, new and
unchanged branches (the evaluation operators, in turn).

    python benchmarks/eval_verdict.py          # evaluate the shipped model
    python benchmarks/eval_verdict.py --fit    # refit serve_app/data/verdict_model.json, then evaluate

Prints a table; writes ``benchmarks/results/eval_verdict.json`` and the reliability diagram
``benchmarks/results/verdict_reliability.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from noise import build_index, generic_unit, place_swapped, right_answers, verdict_operators
from scratch import sample_directory

from serve_app.db.pool import connect_admin, create_pool
from serve_app.directory.churn import churn, read_rows, write_rows
from serve_app.directory.codes import check_digit
from serve_app.directory.institutions import licensed_institutions
from serve_app.directory.loader import load_directory
from serve_app.directory.records import demo_cnaps_path, read_cnaps
from serve_app.normalize import normalize
from serve_app.query.pipeline import CANDIDATES, build_pipeline
from serve_app.query.place_words import outside_bank
from serve_app.query.verdict import VerdictWeights, assess, default_weights, judged_entities
from serve_app.schemas import QueryRequest
from serve_app.training.examples import is_training_record

ROOT = Path(__file__).resolve().parents[1]
MODEL_PATH = ROOT / "serve_app" / "data" / "verdict_model.json"
#: The precision ``match`` must reach on the fit half when choosing its threshold (the goal is 99.7 %).
TARGET_PRECISION = 0.999
MIN_THRESHOLD = 0.9
L2 = 1.0
_TRUNCATIONS = {"truncation", "statement_truncation"}
_UNIQUE_ROWS = _TRUNCATIONS | {"unit_place_swap"}
_BRANCH_WORDS = ("新华支行", "鼓楼支行", "人民路支行", "城东支行", "开发区支行", "营业部", "中山支行", "高新区支行")


def split_of(code: str) -> str:
    """The halves adapters are trained on and measured on, too (``is_training_record``)."""
    return "fit" if is_training_record(code) else "eval"


def make_cases(
    records: list[dict], split: str, per_type: int, absent_share: float, seed: int, operators: tuple | None = None
) -> list[dict]:
    """``per_type`` cases per operator (default: ``verdict_operators(split)``) over ``split``'s records; a
    case is marked for deletion (an absent branch) with probability ``absent_share``."""
    rng = random.Random(f"{seed}:{split}")
    operators = operators or verdict_operators(split)
    index = build_index(records, operators)
    pool = [r for r in records if split_of(r["code"]) == split]
    cases = []
    for operator in operators:
        produced = 0
        for record in rng.sample(pool, len(pool)):
            query = operator.apply(record, rng)
            if query is None:
                continue
            right = right_answers(operator, record, query, records, index)
            cases.append(
                {
                    "split": split,
                    "noise": operator.name,
                    "query": query,
                    "gold": record,
                    "right": right,
                    "delete": rng.random() < absent_share,
                }
            )
            produced += 1
            if produced == per_type:
                break
    return cases


def place_swap_cases(records: list[dict], count: int, seed: int) -> list[dict]:
    """Generic units (清算中心, 营业部, 高新区支行, a place and a level alone) written for another city, on the
    evaluation half only: where the bank has the same unit in that city, it is the one right answer; where
    it has none there, nothing is, and any ``match`` is a wrong payee."""
    rng = random.Random(f"{seed}:place_swap")
    units: dict[tuple, list[dict]] = defaultdict(list)
    cities: dict[str, set[str]] = defaultdict(set)
    for record in records:
        cities[record["bank_name"]].add(record["city"])
        if (unit := generic_unit(record)) is not None:
            units[(record["bank_name"], unit)].append(record)
    by_name: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_name[record["search_name"]].append(record)
    pool = [r for r in records if split_of(r["code"]) == "eval" and generic_unit(r) is not None]
    cases = []
    for record in rng.sample(pool, len(pool)):
        peers = units[(record["bank_name"], generic_unit(record))]
        there = [r for r in peers if r["city"] != record["city"]]
        elsewhere = sorted(cities[record["bank_name"]] - {r["city"] for r in peers})
        if there and (rng.random() < 0.5 or not elsewhere):
            city = rng.choice(there)["city"]
        elif elsewhere:
            city = rng.choice(elsewhere)
        else:
            continue
        query = place_swapped(record, city)
        if query is None:
            continue
        # Right: the same unit there, and any record whose name the query spells exactly (塔城地区分行 written
        # for 潮州 is 中国银行潮州分行, a branch of another unit name that is there).
        right = {r["code"] for r in there if r["city"] == city} | {r["code"] for r in by_name.get(normalize(query), ())}
        gold = record | {"city": city}
        cases.append({"split": "eval", "noise": "unit_place_swap", "query": query, "gold": gold, "right": right,
                      "delete": False})  # fmt: skip
        if len(cases) == count:
            break
    return cases


async def remove_absent(conn, cases: list[dict]) -> set[str]:
    """Delete the records of the cases marked for deletion from the scratch directory; set each case's
    ``truth`` (its right answers that remain). Returns the deleted codes."""
    deleted = {case["gold"]["code"] for case in cases if case["delete"]}
    await conn.execute("DELETE FROM branches WHERE code = ANY($1::text[])", sorted(deleted))
    await conn.execute("ANALYZE branches")
    for case in cases:
        case["truth"] = case["right"] - deleted
    return deleted


def unknown_bank_cases(directory_banks: set[str], count: int, seed: int) -> list[dict]:
    """Licensed banks the directory holds no branch of, written as statements name them."""
    rng = random.Random(f"{seed}:unknown")
    absent = [i for i in licensed_institutions() if i.name not in directory_banks and i.kind != "中央银行"]
    cases = []
    for institution in rng.sample(absent, min(count, len(absent))):
        query = institution.name + rng.choice(("", "股份有限公司")) + rng.choice(_BRANCH_WORDS)
        cases.append({"noise": "unknown_bank", "query": query, "bank": institution.name})
    return cases


#: ``expect`` of a line whose number is an account, not a code: answered from its words, not by a code.
FROM_WORDS = "from_words"
_CODE_REASONS = {"code_lookup", "code_conflict", "invalid_code", "code_not_in_directory"}


def code_cases(records: list[dict], count: int, seed: int) -> list[dict]:
    """Codes alone and in lines: right, with a bad check digit, of another branch of the same bank than
    the words name (a person must choose: ``ambiguous``, the written code first), and an account number
    beside the words (not a code)."""
    rng = random.Random(f"{seed}:codes")
    evaluated = [r for r in records if split_of(r["code"]) == "eval"]
    by_bank = defaultdict(list)
    for record in evaluated:
        by_bank[record["bank_name"]].append(record)
    cases = []
    for record in rng.sample(evaluated, count):
        code = record["code"]
        wrong = code[:-1] + str((check_digit(code[:-1]) + rng.randint(1, 9)) % 10)
        account = "".join(rng.choice("0123456789") for _ in range(12))
        cases += [
            {"noise": "code", "query": code, "expect": ("match", code)},
            {"noise": "code_in_line", "query": f"{record['name']}（联行号：{code}）", "expect": ("match", code)},
            {"noise": "bad_check_digit", "query": wrong, "expect": ("none", None)},
            {
                "noise": "account_number",
                "query": f"账号：{account} 开户行：{record['name']}",
                "expect": (FROM_WORDS, None),
            },
        ]
        others = [r for r in by_bank[record["bank_name"]] if r["branch"] != record["branch"]]
        if others and record["branch"]:  # words that name a branch, not the bank's head office alone
            other = rng.choice(others)["code"]
            query = f"{record['name']}（{other}）"
            cases.append({"noise": "code_of_other_branch", "query": query, "expect": ("ambiguous", other)})
    return cases


def fit_logistic(rows: list[tuple[list[str], bool]]) -> tuple[dict[str, float], float]:
    """L2-regularised logistic regression over one-hot features (Newton's method)."""
    names = sorted({name for active, _ in rows for name in active})
    column = {name: i + 1 for i, name in enumerate(names)}
    x = np.zeros((len(rows), len(names) + 1))
    x[:, 0] = 1.0
    y = np.array([float(label) for _, label in rows])
    for i, (active, _) in enumerate(rows):
        for name in active:
            x[i, column[name]] = 1.0
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], L2)
    penalty[0] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (p - y) + penalty * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {name: round(float(w[column[name]]), 4) for name in names}, round(float(w[0]), 4)


def choose_threshold(tops: list[tuple[float, bool]]) -> float:
    """The lowest confidence at which answering ``match`` keeps the fit half's precision at the target.

    Rounded down, never up: many answers share one confidence (a prefix that only one branch starts with), and
    a threshold rounded above the value it was chosen at would refuse every one of them."""
    eligible = sorted(tops, key=lambda t: -t[0])
    best = 1.0
    right = 0
    for count, (confidence, correct) in enumerate(eligible, 1):
        right += correct
        if right / count >= TARGET_PRECISION:
            best = confidence
    return max(math.floor(best * 10_000) / 10_000, MIN_THRESHOLD)


async def evaluate(per_type: int, absent_share: float, seed: int, fit: bool, unknown: int, codes: int) -> dict:
    async with sample_directory("serve-app-verdict-") as (url, records):
        conn = await connect_admin(url)
        cases = make_cases(records, "fit", per_type, absent_share, seed)
        cases += make_cases(records, "eval", per_type, absent_share, seed)
        cases += place_swap_cases(records, per_type, seed)
        deleted = await remove_absent(conn, cases)
        remaining_banks = {r["bank_name"] for r in await conn.fetch("SELECT DISTINCT bank_name FROM branches")}
        await conn.close()
        pool = await create_pool(url)
        pipeline = await build_pipeline(pool)
        fitted = await _fit(pipeline, [c for c in cases if c["split"] == "fit"]) if fit else None
        if fitted is not None:
            MODEL_PATH.write_text(fitted.to_json(), encoding="utf-8")
            default_weights.cache_clear()
        report = {
            "per_type": per_type,
            "absent_share": absent_share,
            "seed": seed,
            "model": default_weights().meta | {"match_threshold": default_weights().match_threshold},
            "directory": {"records": len(records), "deleted": len(deleted)},
        }
        report |= await _measure(pipeline, cases)
        report["unknown_banks"] = await _measure_unknown(pipeline, unknown_bank_cases(remaining_banks, unknown, seed))
        report["codes"] = await _measure_codes(pipeline, code_cases(records, codes, seed), deleted)
        await pool.close()
    return report


async def _assessed(pipeline, query: str):
    text = normalize(query)
    extraction = pipeline.extractor.extract(text)
    retrieval = await pipeline.repository.search(extraction.entities, text, CANDIDATES)
    entities, written = judged_entities(extraction.entities, retrieval), outside_bank(text, extraction.bank_written)
    uncertain = extraction.other_bank is not None
    return extraction, retrieval, assess(entities, retrieval.candidates, uncertain, default_weights(), written)


async def _fit(pipeline, cases: list[dict]) -> VerdictWeights:
    rows, tops = [], []
    per_case = []
    for case in cases:
        extraction, retrieval, scored = await _assessed(pipeline, case["query"])
        shown = [(fit, active) for fit, active, _ in scored if fit.fits]
        rows += [(active, fit.candidate.code in case["truth"]) for fit, active in shown]
        if retrieval.branch is None:  # words set aside after the name: never a match, so no say in the threshold
            per_case.append((extraction, shown, case))
    weights, intercept = fit_logistic(rows)
    model = VerdictWeights(weights, intercept, 1.0)
    for extraction, shown, case in per_case:
        if not shown or not extraction.entities.bank or extraction.other_bank:
            continue
        best = max(shown, key=lambda item: model.probability(item[1]))
        if best[0].vague:
            continue
        tops.append((model.probability(best[1]), best[0].candidate.code in case["truth"]))
    model.match_threshold = choose_threshold(tops)
    model.meta = {
        "fit_on": f"{len(cases)} generated queries from the fit half of the directory sample",
        "candidates": len(rows),
        "target_precision": TARGET_PRECISION,
        "l2": L2,
    }
    return model


async def _measure(pipeline, cases: list[dict]) -> dict:
    by_split: dict = {}
    calibration = []
    for split in ("fit", "eval"):
        groups: dict[str, list[dict]] = defaultdict(list)
        for case in (c for c in cases if c["split"] == split):
            result = await pipeline.run(QueryRequest(query=case["query"], top_k=5))
            top = result.matches[0] if result.matches else None
            gold = case["gold"]
            row = {
                "present": bool(case["truth"]),
                "match": result.verdict == "match",
                "none": result.verdict == "none",
                "empty": not result.matches,
                "right": top is not None and top.code in case["truth"],
                "other_bank_match": result.verdict == "match" and top is not None and top.bank != gold["bank_name"],
                "bank": result.entities.bank == gold["bank_name"],
                "city": result.entities.city == gold["city"],
            }
            groups[case["noise"]].append(row)
            groups["ALL"].append(row)
            if case["noise"] in _UNIQUE_ROWS and len(case["right"]) == 1:
                # One right answer: a prefix only one branch of the bank starts with, a unit the bank has
                # once in that city (otherwise several branches fit as well, and ``ambiguous`` is right).
                groups[f"{case['noise']}(unique)"].append(row)
            if case["noise"] not in _TRUNCATIONS:
                groups["ALL_BUT_TRUNCATION"].append(row)
            if split == "eval":
                calibration += [(m.confidence, m.code in case["truth"]) for m in result.matches]
        by_split[split] = {noise: _summary(rows) for noise, rows in groups.items()}
    return {"by_split": by_split, "calibration": _calibration(calibration)}


def _summary(rows: list[dict]) -> dict:
    present = [r for r in rows if r["present"]]
    absent = [r for r in rows if not r["present"]]
    matches = [r for r in rows if r["match"]]

    def share(part: list, whole: list) -> float | None:
        return round(len(part) / len(whole), 4) if whole else None

    return {
        "n": len(rows),
        "present": len(present),
        "absent": len(absent),
        "match_precision": share([r for r in matches if r["present"] and r["right"]], matches),
        "present_match_right": share([r for r in present if r["match"] and r["right"]], present),
        "absent_match": share([r for r in absent if r["match"]], absent),
        "present_none": share([r for r in present if r["none"]], present),
        "present_none_empty": share([r for r in present if r["none"] and r["empty"]], present),
        "other_bank_match": share([r for r in rows if r["other_bank_match"]], rows),
        "bank_read": share([r for r in rows if r["bank"]], rows),
        "city_read": share([r for r in rows if r["city"]], rows),
    }


def _calibration(pairs: list[tuple[float, bool]]) -> dict:
    bins = []
    for low in np.arange(0.0, 1.0, 0.1):
        inside = [(c, ok) for c, ok in pairs if low <= c < low + 0.1 or (low >= 0.9 and c == 1.0)]
        if inside:
            bins.append(
                {
                    "from": round(float(low), 1),
                    "n": len(inside),
                    "mean_confidence": round(sum(c for c, _ in inside) / len(inside), 4),
                    "accuracy": round(sum(ok for _, ok in inside) / len(inside), 4),
                }
            )
    ece = sum(b["n"] * abs(b["mean_confidence"] - b["accuracy"]) for b in bins) / max(1, len(pairs))
    return {"matches": len(pairs), "expected_calibration_error": round(ece, 4), "bins": bins}


async def _measure_unknown(pipeline, cases: list[dict]) -> dict:
    rows = []
    for case in cases:
        result = await pipeline.run(QueryRequest(query=case["query"]))
        rows.append((result.entities.bank == case["bank"], result.verdict, result.reason))
    n = max(1, len(rows))
    return {
        "n": len(rows),
        "bank_read": round(sum(r[0] for r in rows) / n, 4),
        "none": round(sum(r[1] == "none" for r in rows) / n, 4),
        "bank_not_in_directory": round(sum(r[2] == "bank_not_in_directory" for r in rows) / n, 4),
        "match": round(sum(r[1] == "match" for r in rows) / n, 4),
    }


async def _measure_codes(pipeline, cases: list[dict], deleted: set[str]) -> dict:
    out: dict[str, list[bool]] = defaultdict(list)
    for case in cases:
        result = await pipeline.run(QueryRequest(query=case["query"]))
        verdict, code = case["expect"]
        if code in deleted:
            verdict, code = "none", None  # the record is gone from the scratch directory
        top = result.matches[0].code if result.matches else None
        if verdict == FROM_WORDS:
            out[case["noise"]].append(result.reason not in _CODE_REASONS)
        else:
            out[case["noise"]].append(result.verdict == verdict and (code is None or top == code))
    return {noise: {"n": len(v), "right": round(sum(v) / len(v), 4)} for noise, v in out.items()}


CHURN_KINDS = ("retired", "renamed", "moved", "new", "unchanged")


async def evaluate_churn(per_kind: int, seed: int) -> dict:
    """Snapshot A (the sample), queries for retired branches asked on it, snapshot B loaded, every query
    asked on B. A query's right answers on B are the records it fits as well as its target (as above)."""
    changed = churn(read_rows(demo_cnaps_path()), seed=seed)
    async with sample_directory("serve-app-churn-") as (url, records_a):
        pool = await create_pool(url)
        pipeline = await build_pipeline(pool)
        with tempfile.TemporaryDirectory() as folder:
            snapshot_b = write_rows(Path(folder) / "b.csv", changed.rows)
            conn = await connect_admin(url)
            records_b = [dict(r) for r in await conn.fetch("SELECT * FROM branches ORDER BY code")]  # A, for now
            cases = _churn_cases(records_a, changed, per_kind, seed)
            before = {c["query"]: await pipeline.run(QueryRequest(query=c["query"])) for c in cases
                      if c["kind"] == "retired"}  # fmt: skip
            await load_directory(conn, snapshot_b)
            records_b = [dict(r) for r in await conn.fetch("SELECT * FROM branches WHERE retired_on IS NULL")]
            await conn.close()
        index = build_index(records_b, verdict_operators("eval"))
        by_code_b = {r["code"]: r for r in records_b}
        rows: dict[str, list[dict]] = defaultdict(list)
        retired = set(changed.retired)
        for case in cases:
            result = await pipeline.run(QueryRequest(query=case["query"]))
            top = result.matches[0].code if result.matches else None
            matched = result.verdict == "match"
            if case["kind"] == "retired":
                was = before[case["query"]]
                right = set()
                paid_before = was.verdict == "match" and was.matches[0].code == case["code"]
            else:
                operator, gold = case["operator"], by_code_b[case["code"]]
                right = right_answers(operator, gold, case["query"], records_b, index)
                paid_before = False
            rows[case["kind"]].append({
                "match": matched,
                "right_match": matched and top in right,
                "wrong_match": matched and top not in right,
                "match_on_retired": matched and top in retired,
                "branch_retired": result.reason == "branch_retired" and top == case["code"],
                "paid_before": paid_before,
            })  # fmt: skip
        await pool.close()
    summary = {}
    for kind in CHURN_KINDS:
        kind_rows = rows[kind]
        paid = [r for r in kind_rows if r["paid_before"]]
        summary[kind] = {
            "n": len(kind_rows),
            "right_match": _share(kind_rows, "right_match"),
            "wrong_match": _share(kind_rows, "wrong_match"),
            "match_on_retired": _share(kind_rows, "match_on_retired"),
            "branch_retired": _share(kind_rows, "branch_retired"),
            "paid_before": len(paid),
            "branch_retired_of_paid_before": _share(paid, "branch_retired"),
        }
    return {"changed": {k: len(getattr(changed, k)) for k in CHURN_KINDS[:4]}, "per_kind": per_kind, "by_kind": summary}


def _churn_cases(records_a: list[dict], changed, per_kind: int, seed: int) -> list[dict]:
    """Up to ``per_kind`` eval-half queries per kind of change, the evaluation operators taken in turn;
    retired branches are asked by their record in A, the others by their record in B (read from the file)."""
    rng = random.Random(f"{seed}:churn")
    operators = verdict_operators("eval")
    by_code_a = {r["code"]: r for r in records_a}
    touched = set(changed.retired) | set(changed.renamed) | set(changed.moved) | set(changed.new)
    codes = {
        "retired": changed.retired, "renamed": changed.renamed, "moved": changed.moved, "new": changed.new,
        "unchanged": [c for c in sorted(by_code_a) if c not in touched],
    }  # fmt: skip
    b_records = _records_of_rows(changed.rows)
    cases = []
    for kind in CHURN_KINDS:
        pool = [c for c in codes[kind] if split_of(c) == "eval"]
        rng.shuffle(pool)
        for code in pool:
            if sum(1 for c in cases if c["kind"] == kind) >= per_kind:
                break
            record = by_code_a[code] if kind == "retired" else b_records[code]
            operator = operators[len(cases) % len(operators)]
            query = operator.apply(record, rng)
            if query is not None:
                cases.append({"kind": kind, "code": code, "query": query, "operator": operator})
    return cases


def _records_of_rows(rows: list[dict]) -> dict[str, dict]:
    """Directory records (as the loader makes them) of CNAPS rows, by code."""
    with tempfile.TemporaryDirectory() as folder:
        path = write_rows(Path(folder) / "rows.csv", rows)
        return {r.code: {**vars(r)} for r in read_cnaps(path)}


def _share(rows: list[dict], key: str) -> float | None:
    return round(sum(r[key] for r in rows) / len(rows), 4) if rows else None


def print_churn(churn_report: dict) -> None:
    def pct(value: float | None) -> str:
        return "   n/a" if value is None else f"{value:6.1%}"

    print(f"\nChurn: snapshot B from A with {churn_report['changed']} codes changed; eval-half queries per kind\n")
    header = (f"{'kind':>10} {'n':>5} | {'right match':>11} {'wrong match':>11} {'match on retired':>16} "
              f"{'branch_retired':>14} {'… of paid before':>16}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for kind, s in churn_report["by_kind"].items():
        print(f"{kind:>10} {s['n']:>5} | {pct(s['right_match']):>11} {pct(s['wrong_match']):>11} "
              f"{pct(s['match_on_retired']):>16} {pct(s['branch_retired']):>14} "
              f"{pct(s['branch_retired_of_paid_before']):>16}")  # fmt: skip


def print_table(report: dict) -> None:
    def pct(value: float | None) -> str:
        return "   n/a" if value is None else f"{value:6.1%}"

    model = report["model"]
    print(f"\nVerdicts on the EVAL half (never fit on); match threshold {model['match_threshold']}\n")
    header = (
        f"{'noise':>26} {'n':>5} {'absent':>6} | {'match precision':>15} {'present→match✓':>15} "
        f"{'absent→match':>12} {'other bank':>10} {'false none':>10} {'(empty)':>7} | {'bank':>6} {'city':>6}"
    )
    print(header)
    print("-" * len(header))
    for noise, s in report["by_split"]["eval"].items():
        print(
            f"{noise:>26} {s['n']:>5} {s['absent']:>6} | {pct(s['match_precision']):>15} "
            f"{pct(s['present_match_right']):>15} {pct(s['absent_match']):>12} {pct(s['other_bank_match']):>10} "
            f"{pct(s['present_none']):>10} {pct(s['present_none_empty']):>7} | "
            f"{pct(s['bank_read'])} {pct(s['city_read'])}"
        )
    fit = report["by_split"]["fit"]["ALL"]
    print(
        f"\n(fit half, for comparison: precision {pct(fit['match_precision'])}, present→match✓ "
        f"{pct(fit['present_match_right'])}, absent→match {pct(fit['absent_match'])})"
    )
    unknown = report["unknown_banks"]
    print(
        f"licensed banks without branches in the directory: n={unknown['n']}, bank read {pct(unknown['bank_read'])}, "
        f"verdict none {pct(unknown['none'])} (bank_not_in_directory {pct(unknown['bank_not_in_directory'])}), "
        f"match {pct(unknown['match'])}"
    )
    codes = ", ".join(f"{k} {pct(v['right'])} of {v['n']}" for k, v in report["codes"].items())
    print(f"codes: {codes}")
    cal = report["calibration"]
    print(f"calibration over {cal['matches']} shown matches: ECE {cal['expected_calibration_error']:.4f}")
    for b in cal["bins"]:
        print(f"  confidence {b['from']:.1f}–{b['from'] + 0.1:.1f}: n={b['n']:>5}  mean {b['mean_confidence']:.3f}"
              f"  observed {b['accuracy']:.3f}")  # fmt: skip


def plot_reliability(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = report["calibration"]["bins"]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot([b["mean_confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label="eval half")
    for b in bins:
        ax.annotate(str(b["n"]), (b["mean_confidence"], b["accuracy"]), fontsize=7, xytext=(4, -10),
                    textcoords="offset points")  # fmt: skip
    ax.axvline(report["model"]["match_threshold"], color="tab:red", lw=0.8, label="match threshold")
    ax.set(xlabel="confidence (decile mean)", ylabel="observed share right", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title("Verdict confidence vs observed accuracy")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit", action="store_true", help="refit serve_app/data/verdict_model.json first")
    parser.add_argument("--per-type", type=int, default=300)
    parser.add_argument("--absent-share", type=float, default=0.3)
    parser.add_argument("--unknown-banks", type=int, default=300)
    parser.add_argument("--codes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--churn-per-kind", type=int, default=300, help="queries per kind of change (0: skip)")
    parser.add_argument("--only-churn", action="store_true", help="run the churn condition alone")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "eval_verdict.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "results" / "verdict_reliability.png")
    args = parser.parse_args()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    churn_report = asyncio.run(evaluate_churn(args.churn_per_kind, args.seed)) if args.churn_per_kind else None
    if args.only_churn:
        assert churn_report is not None, "--only-churn needs --churn-per-kind > 0"
        print_churn(churn_report)
        path = args.json.with_name("eval_churn.json")
        path.write_text(json.dumps(churn_report, ensure_ascii=False, indent=2))
        print(f"wrote {path}")
        return
    report = asyncio.run(
        evaluate(args.per_type, args.absent_share, args.seed, args.fit, args.unknown_banks, args.codes)
    )
    report["churn"] = churn_report
    print_table(report)
    if churn_report is not None:
        print_churn(churn_report)
    args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2))
    plot_reliability(report, args.plot)
    print(f"wrote {args.json} and {args.plot}")


if __name__ == "__main__":
    main()
