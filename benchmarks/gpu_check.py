"""Everything that needs a GPU, measured in one run of a few minutes: ``benchmarks/gpu_check.sh`` runs it.

Nothing is downloaded. The base is a Qwen2-0.5B-shaped model with random weights (24 layers, hidden 896,
vocabulary 151,936, bfloat16) and eight random rank-16 LoRA adapters, built locally with the tiny test
model's tokenizer; the loading code is the one a user's model folder goes through. Steps:

1. ``engines``: HFEngine and VLLMEngine generate ``--new-tokens`` tokens for batches of 1, 32 and 128
   requests, the eight adapters mixed: requests/s, tokens/s, and for batch 1 the share of the GPU's
   memory bandwidth the decoding reached (weights read once per step: bytes of weights × steps/s over the
   peak bandwidth of the card, from ``--peak-gbps`` or the card's name);
2. ``open_loop``: ``open_loop.py``'s Poisson arrivals against HFEngine and VLLMEngine through ``ModelWorker``;
3. ``training``: a few LoRA training steps on the GPU (``serve_app.training``), seconds per step.

Without CUDA (``--cpu``, what the test runs) the model is the tiny test model, HFEngine runs on CPU, and
the GPU-only parts — VLLMEngine on the GPU, the bandwidth share, training on the GPU — are skipped and
listed as skipped in the JSON. Writes ``<out>/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import open_loop

from serve_app.directory.records import demo_cnaps_path, read_cnaps
from serve_app.models.adapters import validate_adapter
from serve_app.models.engine import GenerationRequest
from serve_app.models.paths import ADAPTER_DIR, DEMO_BASE_DIR
from serve_app.models.task import DEFAULT_FORMAT
from serve_app.models.tiny import build_adapter, build_base_model, build_tokenizer

#: Qwen2-0.5B's shape (config.json of Qwen/Qwen2-0.5B).
QWEN2_05B = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
             "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 4096,
             "tie_word_embeddings": True}  # fmt: skip
ADAPTERS = 8
BATCHES = (1, 32, 128)
#: Peak memory bandwidth (GB/s) by card name, for the bandwidth share.
PEAK_GBPS = {"H100 80GB HBM3": 3350, "H100 PCIe": 2000, "H100 NVL": 3900, "H200": 4800, "A100-SXM4-80GB": 2039}


def build_models(folder: Path, gpu: bool) -> tuple[Path, dict]:
    """The base and ``ADAPTERS`` adapters under ``folder``; on CPU the tiny model's shape instead."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    base = folder / DEMO_BASE_DIR
    if gpu:
        tokenizer = build_tokenizer()
        config = Qwen2Config(**QWEN2_05B, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id, torch_dtype="bfloat16")  # fmt: skip
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
        model.save_pretrained(base, safe_serialization=True)
        tokenizer.save_pretrained(base)
    else:
        build_base_model(base)
    specs = {}
    for index in range(ADAPTERS):
        name = f"tenant_{index}"
        build_adapter(base, folder / ADAPTER_DIR / name, seed=index, rank=16)
        specs[name] = validate_adapter(name, name, folder / ADAPTER_DIR, base)
    return base, specs


def prompts(count: int) -> list[str]:
    return [DEFAULT_FORMAT.prompt(name) for name in open_loop.queries(count, seed=3)]


def weight_bytes(base: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in base.glob("*.safetensors"):
        with safe_open(file, "pt") as tensors:
            for key in tensors.keys():  # noqa: SIM118 - safe_open has no __iter__
                tensor = tensors.get_slice(key)
                count = 1
                for size in tensor.get_shape():
                    count *= size
                total += count * 2  # served in bfloat16
    return total


async def engine_rows(kind: str, base: Path, specs: dict, args: argparse.Namespace) -> list[dict]:
    if kind == "hf":
        from serve_app.models.hf_engine import HFEngine

        engine = HFEngine(base, device=args.device, dtype=args.dtype)
    else:
        from serve_app.models.vllm_engine import VLLMEngine

        engine = VLLMEngine(base, max_adapters=ADAPTERS, dtype=args.dtype, max_lora_rank=16,
                            structured_output=False, enforce_eager=False, memory_utilization=0.4,
                            engine_args={"max_num_seqs": max(BATCHES)})  # fmt: skip
    await engine.start()
    rows = []
    try:
        for spec in specs.values():
            await engine.load_adapter(spec)
        names = list(specs)
        texts = prompts(max(BATCHES))
        await engine.generate([GenerationRequest(texts[0], names[0], 4)])  # warm-up
        for batch in BATCHES:
            requests = [GenerationRequest(texts[i], names[i % len(names)], args.new_tokens) for i in range(batch)]
            mark = time.perf_counter()
            results = await engine.generate(requests)
            seconds = time.perf_counter() - mark
            tokens = sum(r.decoding_steps for r in results)
            rows.append({"engine": kind, "batch": batch, "seconds": round(seconds, 3),
                         "requests_per_s": round(batch / seconds, 1), "tokens_per_s": round(tokens / seconds, 1),
                         "steps_per_s": round(max(len(r.token_ids) for r in results) / seconds, 1)})  # fmt: skip
            print(f"  {rows[-1]}", flush=True)
    finally:
        await engine.shutdown()
    return rows


def bandwidth_share(row: dict, bytes_per_step: int, peak_gbps: float) -> float:
    """Weights are read once per decoding step: achieved GB/s over the card's peak."""
    return round(bytes_per_step * row["steps_per_s"] / 1e9 / peak_gbps, 3)


def train_steps(base: Path, folder: Path, steps: int) -> dict:
    from serve_app.training.examples import TENANT_STYLES, build_examples
    from serve_app.training.trainer import TrainingConfig, train_adapter

    examples = build_examples(list(read_cnaps(demo_cnaps_path()))[:2000], TENANT_STYLES["statements"], 64, seed=0)
    config = TrainingConfig(steps=steps, batch_size=16, device="cuda", dtype="bfloat16")
    report = train_adapter(base, folder / "trained", examples, config)
    return {"steps": report.steps, "seconds": report.seconds, "seconds_per_step": round(report.seconds / steps, 3),
            "first_loss": report.first_loss, "last_loss": report.last_loss}  # fmt: skip


async def run(args: argparse.Namespace) -> dict:
    import torch

    gpu = torch.cuda.is_available() and not args.cpu
    args.device, args.dtype = ("cuda", "bfloat16") if gpu else ("cpu", "float32")
    report: dict = {"device": torch.cuda.get_device_name(0) if gpu else "cpu", "skipped": []}
    folder = args.work
    base, specs = build_models(folder, gpu)
    report["model"] = "Qwen2-0.5B shape, random, bfloat16" if gpu else "tiny test model, random, float32"
    report["engines"] = await engine_rows("hf", base, specs, args)
    if gpu:
        vllm_rows = await engine_rows("vllm", base, specs, args)
        report["engines"] += vllm_rows
        peak = args.peak_gbps or next((v for k, v in PEAK_GBPS.items() if k in report["device"]), None)
        per_step = weight_bytes(base)
        report["bandwidth"] = {"weight_bytes": per_step, "peak_gbps": peak}
        if peak:
            report["bandwidth"]["vllm_batch1_share"] = bandwidth_share(vllm_rows[0], per_step, peak)
    else:
        report["skipped"] += ["vllm engine on the GPU", "memory-bandwidth share"]
    loop_args = argparse.Namespace(
        models=folder, paths="hf,vllm" if gpu else "hf", rates=[0.5, 1.0], open_requests=args.open_requests,
        saturation_callers=32, max_batch=128 if gpu else 32, new_tokens=args.new_tokens, device=args.device,
        dtype=args.dtype, memory_utilization=0.4, seed=5,
    )  # fmt: skip
    report["open_loop"] = await open_loop.run_open_loop(loop_args)
    if gpu:
        report["training"] = await asyncio.to_thread(train_steps, base, folder, args.train_steps)
    else:
        report["skipped"] += ["LoRA training on the GPU", "open loop through vllm"]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "gpu")
    parser.add_argument("--work", type=Path, required=True, help="an empty folder for the built models")
    parser.add_argument("--cpu", action="store_true", help="the CPU dry run, even where CUDA is present")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--open-requests", type=int, default=128)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--peak-gbps", type=float)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    started = time.perf_counter()
    report = asyncio.run(run(args))
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "gpu_check.json" if report["device"] != "cpu" else "gpu_check_cpu_dry_run.json"
    (args.out / name).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "open_loop"}, indent=2))
    if report["skipped"]:
        print(f"no GPU: skipped {', '.join(report['skipped'])}")
    print(f"wrote {args.out / name} in {report['seconds']} s")


if __name__ == "__main__":
    main()
