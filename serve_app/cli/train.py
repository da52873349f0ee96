"""``serve-app train-adapter``: train a tenant's LoRA adapter on the directory, measure it, register it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from serve_app.cli.database import prepared_database_url
from serve_app.db.pool import create_pool
from serve_app.directory.records import demo_cnaps_path, read_cnaps
from serve_app.schemas import ADAPTER_NAME, ADAPTER_NAME_RULE
from serve_app.settings import Settings


def print_progress(name: str, progress) -> None:
    """One line per 10 steps (and the last): step, loss, elapsed and ETA."""
    if progress.step % 10 and progress.step != progress.steps:
        return
    print(
        f"  {name}: step {progress.step}/{progress.steps}  loss {progress.loss:.4f}  "
        f"{progress.elapsed_s:.0f} s elapsed, ~{progress.eta_s:.0f} s to go",
        flush=True,
    )


async def register_adapters(settings: Settings, url: str, names: list[str]) -> None:
    """Register (or re-register) each adapter folder ``<adapter root>/<name>`` against the configured base."""
    from serve_app.config import ModelConfig
    from serve_app.models.adapters import AdapterRegistry

    paths = ModelConfig().paths(settings.models_dir)
    pool = await create_pool(url, settings)
    try:
        registry = AdapterRegistry(pool)
        for name in names:
            await registry.upsert(paths.validate(name, name), name)
    finally:
        await pool.close()


async def _train_adapter(settings: Settings, args: argparse.Namespace) -> int:
    from serve_app.config import ModelConfig
    from serve_app.training.run import REPORT, TenantTraining, train_for_tenant
    from serve_app.training.trainer import TrainingConfig

    paths = ModelConfig().paths(settings.models_dir)
    base = args.base or paths.base
    # Everything that would refuse the result is checked before minutes of training.
    if not ADAPTER_NAME.fullmatch(args.name):
        print(f"serve-app train-adapter: invalid name: {ADAPTER_NAME_RULE}", file=sys.stderr)
        return 2
    if not (base / "config.json").exists():
        print(
            f"serve-app train-adapter: no base model at {base} (serve-app make-demo-model builds one)", file=sys.stderr
        )
        return 1
    if args.register and base != paths.base:
        print("serve-app train-adapter: --register needs the configured base model, not --base", file=sys.stderr)
        return 2
    training = TrainingConfig(
        rank=args.rank, steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
        device=args.device, dtype=args.dtype, answer_format=args.answer_format,
    )  # fmt: skip
    plan = TenantTraining(training, examples=args.examples or args.steps * args.batch_size, held_out=args.held_out)
    output = paths.adapter_root / args.name
    records = list(read_cnaps(args.file or demo_cnaps_path()))
    print(f"training {args.name} ({args.tenant}) on {base.name}: {plan.examples} examples, {args.steps} steps")
    report = await asyncio.to_thread(
        train_for_tenant, base, output, args.tenant, plan, records, lambda p: print_progress(args.name, p)
    )
    print(json.dumps({"held_out": report["held_out"]["overall"], "seconds": report["trained"]["seconds"]}))
    print(f"adapter written to {output} (report: {output / REPORT})")
    if args.register:
        async with prepared_database_url(settings) as url:
            await register_adapters(settings, url, [args.name])
        print(f"registered {args.name}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    from serve_app.models.task import DEFAULT_FORMAT, FORMATS
    from serve_app.training.examples import TENANT_STYLES

    train = commands.add_parser(
        "train-adapter",
        help="train a LoRA adapter on the directory (peft), evaluate it on held-out records, register it",
        description="Examples are written from the directory's records the way the tenant's texts are; the "
        "labels are the records' own fields. Half of the records (by code) are never trained on: the "
        "adapter is measured on them.",
    )
    train.add_argument("name", help="adapter name (its folder under the adapter root)")
    train.add_argument("--tenant", choices=sorted(TENANT_STYLES), default="statements", help="training styles")
    train.add_argument("--base", type=Path, help="base model folder (default: the configured base)")
    train.add_argument("--file", type=Path, help="CNAPS CSV to draw records from (default: the shipped sample)")
    train.add_argument("--steps", type=int, default=60, help="optimizer steps")
    train.add_argument("--examples", type=int, help="distinct examples (default: steps × batch size)")
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--rank", type=int, default=8, help="LoRA rank")
    train.add_argument("--learning-rate", type=float, default=2e-3)
    train.add_argument("--held-out", type=int, default=48, help="held-out examples to evaluate on")
    train.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 …")
    train.add_argument("--dtype", default="float32", help="float32 on CPU; bfloat16 on a GPU")
    train.add_argument(
        "--answer-format", type=int, choices=sorted(FORMATS), default=DEFAULT_FORMAT.version,
        help="answer format to train for: 1 JSON, 2 compact (fewer tokens; see docs/models.md)",
    )  # fmt: skip
    train.add_argument("--register", action="store_true", help="register it in the adapter registry")
    train.set_defaults(run=_train_adapter)
