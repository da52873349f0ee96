"""Which engine a model replica runs, made from the validated config: the one place that chooses.

``ModelServer``, the CLI and the benchmarks call ``make_engine``; tests pass their own ``factories`` (a
fake engine class) and get the same construction path. Each factory imports its engine only when called,
so vLLM is imported only where it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from serve_app.config import ModelConfig
from serve_app.models.engine import Engine
from serve_app.models.paths import ModelPaths

#: Makes an engine for the base model folder from the model config.
EngineFactory = Callable[[ModelConfig, Path], Engine]


def hf_engine(config: ModelConfig, base: Path) -> Engine:
    from serve_app.models.hf_engine import HFEngine

    return HFEngine(base, device=config.device, dtype=config.dtype, quantization=config.quantization)


def vllm_engine(config: ModelConfig, base: Path) -> Engine:
    from serve_app.models.vllm_engine import VLLMEngine

    options = config.vllm
    return VLLMEngine(
        base,
        max_adapters=config.max_adapters_per_replica,
        dtype=config.dtype,
        max_lora_rank=options.max_lora_rank,
        max_model_len=options.max_model_len,
        enforce_eager=options.enforce_eager,
        structured_output=options.structured_output,
        memory_utilization=options.memory_utilization,
        quantization=None if config.quantization == "none" else config.quantization,
    )


ENGINES: Mapping[str, EngineFactory] = {"hf": hf_engine, "vllm": vllm_engine}


def make_engine(config: ModelConfig, paths: ModelPaths, factories: Mapping[str, EngineFactory] = ENGINES) -> Engine:
    """The engine ``config.engine`` names, over the resolved base model; not started."""
    return factories[config.engine](config, paths.base)
