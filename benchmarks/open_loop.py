"""Readings through ``ModelWorker`` as a model replica serves them: closed loop per setup, open loop per path.

**Setups** (``--setup NAME=MODELS_DIR[:dtype[:quantization]]``, HFEngine): the same queries read one at a
time (latency p50) and by 32 concurrent callers (throughput), with the adapters and base of a models
folder — say, the demo's adapters trained for answer format 1 beside those trained for format 2, in full
precision, bfloat16 or int8. Each reading is prompted and parsed in its adapter's format; the decoding
steps per reading and the share of valid answers are reported with the timings.

**Open loop** (``--paths``): requests arrive as a Poisson process at set rates, adapters mixed, and each
one's latency runs from its arrival to its answer, so queueing counts. Paths:

- ``hf``: HFEngine behind the worker's ``EngineBatcher`` (one batch at a time);
- ``vllm``: VLLMEngine, each request straight to its scheduler (continuous batching);
- ``vllm-batched``: VLLMEngine behind an ``EngineBatcher``, the way this service drove vLLM before.

The rates are fractions of the batch-at-a-time path's saturation, measured first in the same run (its
closed-loop throughput with ``--saturation-callers`` concurrent callers).

The adapters come from a models folder; the registry the residency asks is this run's own table of them
(``StaticRegistry``): a held adapter costs no registry lookup, so it is not on the measured path.

    python benchmarks/open_loop.py --setup json=DIR1 --setup compact=DIR2 --setup compact-bf16=DIR2:bfloat16
    python benchmarks/open_loop.py --paths hf,vllm,vllm-batched --models DIR [--rates 0.5,0.9,1.2]

Prints tables; writes ``benchmarks/results/open_loop.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from serve_app.config import ModelConfig
from serve_app.directory.records import demo_cnaps_path, read_cnaps
from serve_app.models.adapters import AdapterOut
from serve_app.models.engine import Engine
from serve_app.models.engines import make_engine
from serve_app.models.paths import ADAPTER_DIR, DEMO_BASE_DIR, ModelPaths
from serve_app.models.residency import AdapterResidency
from serve_app.models.server import ModelWorker
from serve_app.normalize import normalize

ROOT = Path(__file__).resolve().parents[1]


class StaticRegistry:
    """The adapter folders under a models folder, as the registry would return them (revision 1)."""

    def __init__(self, adapter_root: Path):
        self.adapter_root = adapter_root

    async def get(self, name: str) -> AdapterOut | None:
        folder = self.adapter_root / name
        if not (folder / "adapter_config.json").is_file():
            return None
        config = json.loads((folder / "adapter_config.json").read_text())
        return AdapterOut(name=name, base_model=config["base_model_name_or_path"], path=name, rank=config["r"],
                          revision=1, created_at=datetime.now(UTC))  # fmt: skip


class BatchAtATime:
    """An engine that says it does not schedule requests itself, so the worker puts a batcher in front:
    how this service drove vLLM before each request went straight to its scheduler."""

    schedules_requests = False

    def __init__(self, engine: Engine):
        self._engine = engine
        self.name = engine.name

    def __getattr__(self, attribute: str):
        return getattr(self._engine, attribute)


def queries(count: int, seed: int) -> list[str]:
    names = [normalize(record.name) for record in read_cnaps(demo_cnaps_path())]
    return random.Random(seed).sample(names, count)


def adapters_in(models: Path) -> list[str]:
    return sorted(p.name for p in (models / ADAPTER_DIR).iterdir() if (p / "adapter_config.json").is_file())


async def start_worker(
    models: Path, config: ModelConfig, engine: Engine | None = None, batch_at_a_time: bool = False
) -> ModelWorker:
    """A started worker over ``models``: on ``engine`` when given (one vLLM engine serves both vLLM paths),
    else on the engine ``config`` names."""
    paths = ModelPaths.resolve(models, models / DEMO_BASE_DIR, models / ADAPTER_DIR)
    engine = engine or make_engine(config, paths)
    if batch_at_a_time:
        engine = BatchAtATime(engine)  # type: ignore[assignment]
    residency = AdapterResidency(engine, StaticRegistry(paths.adapter_root), paths)  # type: ignore[arg-type]
    worker = ModelWorker(engine, residency, config.tunables, config.engine)
    await worker.start(adapters_in(models))
    return worker


async def closed_loop(worker: ModelWorker, texts: list[str], adapters: list[str], callers: int) -> dict:
    """``callers`` concurrent callers read ``texts`` (adapters taken in turn); latency and throughput."""
    pending = list(enumerate(texts))
    latencies: list[float] = []
    answers = []

    async def caller() -> None:
        while pending:
            index, text = pending.pop()
            mark = time.perf_counter()
            answers.append(await worker.read(text, adapters[index % len(adapters)]))
            latencies.append(time.perf_counter() - mark)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    seconds = time.perf_counter() - started
    return {
        "callers": callers,
        "readings": len(texts),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "per_s": round(len(texts) / seconds, 3),
        "valid": round(sum(a.valid for a in answers) / len(answers), 4),
    }


async def open_loop(worker: ModelWorker, texts: list[str], adapters: list[str], rate: float, seed: int) -> dict:
    """Poisson arrivals at ``rate`` per second; latency from each arrival to its answer."""
    rng = random.Random(seed)
    latencies: list[float] = []
    started = time.perf_counter()

    async def arrive(at: float, index: int) -> None:
        await asyncio.sleep(max(0.0, started + at - time.perf_counter()))
        await worker.read(texts[index], adapters[index % len(adapters)])
        latencies.append(time.perf_counter() - (started + at))

    arrivals, clock = [], 0.0
    for index in range(len(texts)):
        clock += rng.expovariate(rate)
        arrivals.append(arrive(clock, index))
    await asyncio.gather(*arrivals)
    seconds = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "offered_per_s": round(rate, 3),
        "requests": len(texts),
        "achieved_per_s": round(len(texts) / seconds, 3),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[round(0.99 * (len(ordered) - 1))] * 1000, 1),
    }


def config_for(engine: str, dtype: str, quantization: str, args: argparse.Namespace) -> ModelConfig:
    batch = 1 if quantization == "int8" else args.max_batch
    return ModelConfig.model_validate({
        "engine": engine, "device": args.device, "dtype": dtype, "quantization": quantization,
        "max_adapters_per_replica": 8,
        "vllm": {"structured_output": False, "memory_utilization": args.memory_utilization},
        "resources": {"max_ongoing_requests": max(batch, 32), "max_queued_requests": 1024},
        "tunables": {"max_batch_size": batch, "max_new_tokens": args.new_tokens},
    })  # fmt: skip


async def run_setups(args: argparse.Namespace) -> list[dict]:
    rows = []
    texts = queries(args.closed_readings, args.seed)
    for setup in args.setup:
        name, _, spec = setup.partition("=")
        models, dtype, quantization = (spec.split(":") + ["float32", "none"][spec.count(":") :])[:3]
        worker = await start_worker(Path(models), config_for("hf", dtype, quantization, args))
        adapters = adapters_in(Path(models))
        one = await closed_loop(worker, texts[: args.single_readings], adapters, 1)
        many = await closed_loop(worker, texts, adapters, 32) if quantization != "int8" else None
        steps = worker.engine.stats()
        await worker.engine.shutdown()
        rows.append({"setup": name, "models": models, "dtype": dtype, "quantization": quantization,
                     "one_at_a_time": one, "callers_32": many, "generated": steps.generated_requests})  # fmt: skip
        print(f"  {name}: one at a time {one}; 32 callers {many}", flush=True)
    return rows


async def run_open_loop(args: argparse.Namespace) -> dict:
    texts = queries(args.open_requests, args.seed + 1)
    adapters = adapters_in(args.models)
    paths = args.paths.split(",")
    saturation_path = "vllm-batched" if "vllm-batched" in paths else paths[0]
    workers: dict[str, ModelWorker] = {}
    results: dict[str, list[dict]] = {}
    try:
        vllm_config = config_for("vllm", args.dtype, "none", args)
        shared_vllm = None
        if any(path.startswith("vllm") for path in paths):
            shared_vllm = make_engine(vllm_config, ModelPaths.resolve(args.models, args.models / DEMO_BASE_DIR))
        for path in paths:
            if path == "hf":
                workers[path] = await start_worker(args.models, config_for("hf", args.dtype, "none", args))
            else:
                workers[path] = await start_worker(
                    args.models, vllm_config, shared_vllm, batch_at_a_time=path == "vllm-batched"
                )
        saturation = await closed_loop(
            workers[saturation_path], texts[: args.saturation_callers * 2], adapters, args.saturation_callers
        )
        print(f"  saturation of {saturation_path}: {saturation}", flush=True)
        for fraction in args.rates:
            rate = fraction * saturation["per_s"]
            for path in paths:
                row = await open_loop(workers[path], texts, adapters, rate, args.seed) | {"rate_fraction": fraction}
                results.setdefault(path, []).append(row)
                print(f"  {path} at {fraction:g}x saturation: {row}", flush=True)
    finally:
        for worker in workers.values():
            await worker.engine.shutdown()  # the shared vLLM engine's second shutdown does nothing
    return {"saturation_path": saturation_path, "saturation": saturation, "paths": results}


def print_tables(report: dict) -> None:
    if report.get("setups"):
        print("\nClosed loop through ModelWorker (HFEngine): one reading at a time, and 32 concurrent callers\n")
        header = f"{'setup':>16} {'p50 alone ms':>12} {'valid':>6} | {'32 callers /s':>13} {'vs first':>8}"
        print(header)
        print("-" * len(header))
        first = report["setups"][0]
        for row in report["setups"]:
            one, many = row["one_at_a_time"], row["callers_32"]
            rate = f"{many['per_s']:>13.3f} {many['per_s'] / first['callers_32']['per_s']:>7.2f}x" if many else " " * 22
            print(f"{row['setup']:>16} {one['p50_ms']:>12.0f} {one['valid']:>6.1%} | {rate}")
    if report.get("open_loop"):
        loop = report["open_loop"]
        print(f"\nOpen loop (Poisson arrivals); rates as fractions of {loop['saturation_path']}'s saturation, "
              f"{loop['saturation']['per_s']} readings/s\n")  # fmt: skip
        paths = list(loop["paths"])
        header = f"{'rate':>6} {'req/s':>6} | " + " | ".join(f"{p:>28}" for p in paths)
        print(header)
        print(" " * 16 + " | ".join(f"{'p50 ms':>9} {'p99 ms':>9} {'done/s':>8}" for _ in paths))
        print("-" * len(header))
        for index, row in enumerate(loop["paths"][paths[0]]):
            cells = []
            for path in paths:
                r = loop["paths"][path][index]
                cells.append(f"{r['p50_ms']:>9.0f} {r['p99_ms']:>9.0f} {r['achieved_per_s']:>8.3f}")
            print(f"{row['rate_fraction']:>5g}x {row['offered_per_s']:>6.3f} | " + " | ".join(cells))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", action="append", default=[], metavar="NAME=MODELS_DIR[:dtype[:quantization]]")
    parser.add_argument("--single-readings", type=int, default=12)
    parser.add_argument("--closed-readings", type=int, default=64)
    parser.add_argument("--paths", default="", help="open-loop paths: hf, vllm, vllm-batched (comma separated)")
    parser.add_argument("--models", type=Path, help="the models folder the open-loop paths serve")
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 0.9, 1.2])
    parser.add_argument("--open-requests", type=int, default=48)
    parser.add_argument("--saturation-callers", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--memory-utilization", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "open_loop.json")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    report: dict = {"device": args.device, "new_tokens": args.new_tokens, "max_batch": args.max_batch}
    if args.setup:
        report["setups"] = await run_setups(args)
    if args.paths:
        report["open_loop"] = await run_open_loop(args)
    print_tables(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    asyncio.run(main())
