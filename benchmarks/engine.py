"""Engines side by side on the same prompts: the predecessor's way against resident serving.

For each engine (HFEngine, VLLMEngine):
- ``reload``: what the predecessor did — load the base model and the adapter for every request;
- ``resident``: base and adapters loaded once, one request at a time;
- ``batched``: resident, requests mixed across base / job_22 / job_23 in batches of ``--batch``.

Uses the demo model (SmolLM2-135M and the adapters trained for it, built once under the models folder)
unless ``--model`` names a Hugging Face model folder with ``--adapter NAME=PATH`` adapters, or ``--tiny``
asks for the tiny random test model. Prints a table and writes JSON.

    python benchmarks/engine.py [--requests 24] [--batch 24] [--new-tokens 32] [--engines hf,vllm]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from serve_app.directory.records import demo_cnaps_path, read_cnaps
from serve_app.models.adapters import validate_adapter
from serve_app.models.demo import make_demo_model
from serve_app.models.engine import GenerationRequest
from serve_app.models.hf_engine import HFEngine
from serve_app.models.task import DEFAULT_FORMAT
from serve_app.models.tiny import make_tiny_model
from serve_app.normalize import normalize
from serve_app.settings import Settings


def make_engine(kind: str, base: Path, args: argparse.Namespace):
    if kind == "hf":
        return HFEngine(base, device=args.device, dtype=args.dtype)
    from serve_app.models.vllm_engine import VLLMEngine

    return VLLMEngine(base, max_adapters=len(args.adapters), dtype=args.dtype, structured_output=False,
                      memory_utilization=args.memory_utilization)  # fmt: skip


def requests_for(count: int, adapters: list[str | None], new_tokens: int) -> list[GenerationRequest]:
    names = [normalize(r.name) for r in read_cnaps(demo_cnaps_path())][::97][:count]
    return [
        GenerationRequest(DEFAULT_FORMAT.prompt(n), adapters[i % len(adapters)], new_tokens)
        for i, n in enumerate(names)
    ]


async def run_engine(kind: str, base: Path, specs: dict, args: argparse.Namespace) -> list[dict]:
    routes: list[str | None] = [None, *specs]
    requests = requests_for(args.requests, routes, args.new_tokens)
    rows = []

    # The predecessor: a fresh model (and adapter) per request.
    latencies = []
    for request in requests[: args.reload_requests]:
        started = time.perf_counter()
        engine = make_engine(kind, base, args)
        await engine.start()
        if request.adapter:
            await engine.load_adapter(specs[request.adapter])
        await engine.generate([request])
        await engine.shutdown()
        latencies.append(time.perf_counter() - started)
    rows.append(summary(kind, "reload", latencies, len(latencies), sum(latencies)))

    engine = make_engine(kind, base, args)
    await engine.start()
    for spec in specs.values():
        await engine.load_adapter(spec)
    await engine.generate(requests[:2])  # warm-up

    latencies = []
    started_all = time.perf_counter()
    for request in requests:
        started = time.perf_counter()
        await engine.generate([request])
        latencies.append(time.perf_counter() - started)
    rows.append(summary(kind, "resident", latencies, len(requests), time.perf_counter() - started_all))

    latencies = []
    started_all = time.perf_counter()
    for start in range(0, len(requests), args.batch):
        batch = requests[start : start + args.batch]
        started = time.perf_counter()
        await engine.generate(batch)
        latencies += [time.perf_counter() - started] * len(batch)
    rows.append(summary(kind, f"batched x{args.batch}", latencies, len(requests), time.perf_counter() - started_all))
    assert engine.stats().base_loads == 1
    await engine.shutdown()
    return rows


def summary(kind: str, mode: str, latencies: list[float], count: int, seconds: float) -> dict:
    return {
        "engine": kind,
        "mode": mode,
        "requests": count,
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "requests_per_s": round(count / seconds, 2),
    }


def adapter_specs(args: argparse.Namespace, tmp: Path) -> tuple[Path, dict]:
    """The base model folder and validated adapter specs: the user's, or the demo model built in ``tmp``."""
    if args.model:
        pairs = dict(item.split("=", 1) for item in args.adapter)
        return args.model, {
            name: validate_adapter(name, Path(path).resolve(), Path("/"), args.model) for name, path in pairs.items()
        }
    demo = make_tiny_model(tmp) if args.tiny else make_demo_model(Settings().models_dir)
    return demo.base, {name: validate_adapter(name, name, demo.adapter_root, demo.base) for name in demo.adapters}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="hf,vllm")
    parser.add_argument("--model", type=Path, help="a Hugging Face model folder (default: the demo model)")
    parser.add_argument("--tiny", action="store_true", help="the tiny random test model instead of the demo")
    parser.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--reload-requests", type=int, default=3)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--memory-utilization", type=float, default=0.3)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/engine.json"))
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    with tempfile.TemporaryDirectory(prefix="serve-app-engine-") as tmp:
        base, specs = await asyncio.to_thread(adapter_specs, args, Path(tmp))
        args.adapters = list(specs)
        rows = []
        for kind in args.engines.split(","):
            rows += await run_engine(kind, base, specs, args)

    print(f"\nEngines on {base.name}: {args.requests} requests over base + {', '.join(specs)}, {args.new_tokens} new "
          f"tokens, {args.device}/{args.dtype}\n")  # fmt: skip
    header = f"{'engine':>6} {'mode':>12} {'requests':>8} {'p50 ms':>9} {'req/s':>8} {'vs reload':>10}"
    print(header)
    print("-" * len(header))
    for row in rows:
        reload_rate = next(r["requests_per_s"] for r in rows if r["engine"] == row["engine"] and r["mode"] == "reload")
        row["speedup_vs_reload"] = round(row["requests_per_s"] / reload_rate, 1)
        print(
            f"{row['engine']:>6} {row['mode']:>12} {row['requests']:>8} {row['latency_p50_ms']:>9.1f} "
            f"{row['requests_per_s']:>8.2f} {row['speedup_vs_reload']:>9.1f}x"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"model": str(base), "device": args.device, "rows": rows}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    asyncio.run(main())
