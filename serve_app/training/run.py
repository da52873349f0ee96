"""Train one tenant's adapter end to end: examples from the training half of the directory, peft LoRA
training, evaluation on the held-out half, and a report beside the adapter (``training_report.json``).

The one training path: ``serve-app train-adapter`` and ``make-demo-model`` both run it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from serve_app.directory.records import BranchRecord, demo_cnaps_path, read_cnaps
from serve_app.training.evaluate import evaluate_adapter
from serve_app.training.examples import TENANT_STYLES, build_examples, is_training_record
from serve_app.training.trainer import Progress, TrainingConfig, train_adapter

REPORT = "training_report.json"


@dataclass(frozen=True)
class TenantTraining:
    """How much to train and measure. ``examples`` are drawn from the training half only."""

    training: TrainingConfig
    examples: int
    held_out: int
    seed: int = 0


#: The demo's budget: a few minutes per adapter on 2 CPU cores.
DEMO_TRAINING = TenantTraining(TrainingConfig(steps=60, batch_size=8), examples=480, held_out=48)


def train_for_tenant(
    base: Path,
    output: Path,
    tenant: str,
    plan: TenantTraining,
    records: Iterable[BranchRecord] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> dict:
    """Train ``tenant``'s styles into an adapter at ``output`` over ``base``; return the report (also
    written to ``output / REPORT``). ``records`` default to the shipped directory sample."""
    if tenant not in TENANT_STYLES:
        raise ValueError(f"unknown tenant style {tenant!r}; choose from {', '.join(TENANT_STYLES)}")
    styles = TENANT_STYLES[tenant]
    pool = list(records if records is not None else read_cnaps(demo_cnaps_path()))
    training = build_examples([r for r in pool if is_training_record(r.code)], styles, plan.examples, plan.seed)
    held_out = build_examples([r for r in pool if not is_training_record(r.code)], styles, plan.held_out, plan.seed + 1)
    trained = train_adapter(base, output, training, plan.training, on_progress)
    measured = asyncio.run(evaluate_adapter(base, output, held_out, device=plan.training.device))
    report = {
        "tenant": tenant,
        "base": base.name,
        "training": asdict(plan.training),
        "trained": asdict(trained),
        "held_out": measured,
    }
    (output / REPORT).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return report
