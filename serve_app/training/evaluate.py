"""Measure an adapter on held-out examples through the serving engine: valid answers and per-field accuracy.

It runs the adapter exactly as a model replica would (``HFEngine``, its answer format's prompt and parser),
on examples built from records it never trained on (``is_training_record`` false).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from serve_app.config import ModelTunables
from serve_app.models.adapters import validate_adapter
from serve_app.models.hf_engine import HFEngine
from serve_app.models.task import ANSWER_FIELDS, format_for
from serve_app.training.examples import Example

#: Tokens an answer may take: what a model replica allows by default.
MAX_NEW_TOKENS = ModelTunables().max_new_tokens


async def evaluate_adapter(
    base: Path, adapter: Path | None, examples: Sequence[Example], batch_size: int = 16, device: str = "cpu"
) -> dict:
    """Valid-answer rate, per-field accuracy (exact match with the record) and all-fields accuracy, per style
    and overall; ``adapter`` None measures the base alone."""
    engine = HFEngine(base, device=device)
    await engine.start()
    spec = None
    if adapter is not None:
        spec = validate_adapter(adapter.name, adapter.name, adapter.parent, base)  # what registration checks
        await engine.load_adapter(spec)
    name = None if spec is None else spec.name
    answer_format = format_for(spec)
    started = time.perf_counter()
    per_style: dict[str, Counter] = {}
    try:
        for first in range(0, len(examples), batch_size):
            chunk = examples[first : first + batch_size]
            requests = [answer_format.request(e.query, name, MAX_NEW_TOKENS) for e in chunk]
            for example, result in zip(chunk, await engine.generate(requests), strict=True):
                counts = per_style.setdefault(example.style, Counter())
                _score(counts, example, answer_format.read(result.text, result.finished))
    finally:
        await engine.shutdown()
    total = sum(per_style.values(), Counter())
    return {
        "examples": len(examples),
        "seconds": round(time.perf_counter() - started, 1),
        "overall": _rates(total),
        "by_style": {style: _rates(counts) for style, counts in sorted(per_style.items())},
    }


def _score(counts: Counter, example: Example, answer) -> None:
    counts["n"] += 1
    if not answer.valid:
        return
    counts["valid"] += 1
    read = answer.entities.model_dump()
    right = [read[field] == example.answer.get(field) for field in ANSWER_FIELDS]
    for field, ok in zip(ANSWER_FIELDS, right, strict=True):
        counts[field] += ok
    counts["all_fields"] += all(right)


def _rates(counts: Counter) -> dict:
    n = counts["n"] or 1
    return {"n": counts["n"]} | {key: round(counts[key] / n, 4) for key in ("valid", *ANSWER_FIELDS, "all_fields")}
