"""``HFEngine``: transformers + peft, on CPU or CUDA — the development engine and the reference.

The base model is loaded once in ``start``. Adapters are added to one ``PeftModel`` with
``load_adapter`` and removed with ``delete_adapter``; a batch that mixes adapters (and the bare base)
runs as one ``generate`` call with ``adapter_names=`` (peft's mixed-batch LoRA). A batch of one adapter
(every reading alone is one) runs with that adapter active instead, and one of the bare base with the
adapters disabled: peft's mixed path gathers rows per adapter in every layer at every step, about
a tenth of a CPU reading. Generation is greedy.
Model work runs in a worker thread, one call at a time, so the event loop stays free. After each decoding
step a stopping criterion records progress (the health check's proof) and ends the rows whose callers
have gone (``GenerationRequest.abandoned``). With ``quantization="int8"`` (CPU) the base's linear layers
are int8 (``quantize``); adapters stay in full precision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from serve_app.errors import AdapterInvalid, AdapterNotLoaded, EngineError
from serve_app.models.engine import AdapterSpec, EngineStats, GenerationRequest, GenerationResult

log = logging.getLogger(__name__)

BASE = "__base__"  # peft's name for "no adapter" in adapter_names
#: A generation that has made no decoding step for this long is stuck: the replica is unhealthy. (Counted
#: per step, not per generation: a CPU batch of 32 long readings on busy cores takes minutes and is fine.)
STALL_AFTER_S = 120.0
#: An idle engine proves it still computes (one token) when it has not generated for this long.
PROBE_AFTER_S = 30.0


class HFEngine:
    schedules_requests = False  # one generate() at a time: callers batch (see ``Engine``)

    def __init__(
        self,
        model_path: Path,
        device: str = "cpu",
        dtype: str = "float32",
        name: str = "hf",
        quantization: str = "none",
    ):
        if quantization not in ("none", "int8") or (quantization == "int8" and device != "cpu"):
            raise ValueError(f"HFEngine quantizes to int8 on CPU only, not {quantization!r} on {device!r}")
        self.name = name
        self.quantization = quantization
        self.model_path = Path(model_path)
        self.device = device
        self.dtype = dtype
        # transformers/peft objects, set by start() and the first adapter load (untyped libraries)
        self._tokenizer: Any = None
        self._base: Any = None
        self._peft: Any = None  # PeftModel wrapping _base while adapters are loaded
        self._adapters: dict[str, AdapterSpec] = {}
        self._lock = asyncio.Lock()
        self._stats = EngineStats(base_model=str(self.model_path))
        self._busy_since: float | None = None
        self._last_step = 0.0  # time.monotonic() of the last decoding step of any generation
        self._last_generated = 0.0

    async def start(self) -> None:
        async with self._lock:
            if self._base is None:
                await asyncio.to_thread(self._load_base)

    def _load_base(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        if self.device == "cpu":
            # Random or lightly trained weights produce denormals that make CPU matmuls 10-20x slower.
            torch.set_flush_denormal(True)
            # Read in a worker thread, where generation runs too (OpenMP keeps the count per thread).
            self._stats.cpu_threads = torch.get_num_threads()
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=getattr(torch, self.dtype))
        except (OSError, ValueError) as exc:
            raise EngineError(f"cannot load base model from {self.model_path}: {exc}") from exc
        tokenizer.padding_side = "left"  # generation continues from the right edge of every row
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._tokenizer = tokenizer
        if self.quantization == "int8":
            from serve_app.models.quantize import quantize_linear_layers

            quantize_linear_layers(model)
        self._base = model.to(self.device).eval()
        self._stats.base_loads += 1

    async def load_adapter(self, spec: AdapterSpec) -> None:
        async with self._lock:
            self._require_started()
            if spec.name in self._adapters:
                return
            await asyncio.to_thread(self._load_adapter, spec)
            self._adapters[spec.name] = spec

    def _load_adapter(self, spec: AdapterSpec) -> None:
        from peft import PeftModel

        try:
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self._base, spec.path, adapter_name=spec.name)
                self._peft.eval()
            else:
                self._peft.load_adapter(spec.path, adapter_name=spec.name)
        except Exception as exc:  # peft/safetensors raise many types for a broken folder
            self._discard_partial(spec.name)
            raise AdapterInvalid(f"adapter {spec.name!r} failed to load: {type(exc).__name__}: {exc}") from exc

    def _discard_partial(self, name: str) -> None:
        if self._peft is not None and name in self._peft.peft_config:
            try:
                self._delete(name)
            except Exception:
                log.exception("could not remove the half-loaded adapter %s", name)

    def _delete(self, name: str) -> None:
        """Delete an adapter and keep peft's *active* adapter one that exists.

        peft re-points the active adapter from what its layers still hold, which after a failed load can
        be a name already deleted; its ``generate`` then fails with a KeyError for every later batch. With
        no adapter left there is nothing valid to point at, so the LoRA layers are removed altogether and
        the next load wraps the plain base again.
        """
        assert self._peft is not None
        self._peft.delete_adapter(name)
        remaining = list(self._peft.peft_config)
        if not remaining:
            self._base = self._peft.unload()
            self._peft = None
        elif self._peft.active_adapter not in remaining:
            self._peft.set_adapter(remaining[0])

    async def unload_adapter(self, name: str) -> None:
        async with self._lock:
            if self._adapters.pop(name, None) is None:
                return
            await asyncio.to_thread(self._delete, name)

    def loaded_adapters(self) -> list[str]:
        return sorted(self._adapters)

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        if not requests:
            return []
        async with self._lock:
            self._require_started()
            # Checked under the lock: an unload cannot slip in between this check and peft's generate.
            unknown = {r.adapter for r in requests if r.adapter is not None} - set(self._adapters)
            if unknown:
                raise AdapterNotLoaded(f"adapters not loaded: {sorted(unknown)}")
            self._busy_since = time.monotonic()
            try:
                results = await asyncio.to_thread(self._generate, list(requests))
            finally:
                self._busy_since = None
            self._last_generated = time.monotonic()
        self._stats.batches += 1
        self._stats.generated_requests += len(requests)
        return results

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        import torch

        tokenizer = self._tokenizer
        inputs = tokenizer([r.prompt for r in requests], return_tensors="pt", padding=True).to(self.device)
        max_new = max(r.max_new_tokens for r in requests)
        kwargs = {
            "max_new_tokens": max_new,
            "do_sample": False,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "stopping_criteria": _progress_criteria(self._record_step, requests),
        }
        model, adapters = self._base, {r.adapter for r in requests}
        context: Any = contextlib.nullcontext()
        if self._peft is not None:
            model = self._peft
            if adapters == {None}:
                context = self._peft.disable_adapter()
            elif len(adapters) == 1:
                self._peft.set_adapter(next(iter(adapters)))
            else:
                kwargs["adapter_names"] = [r.adapter or BASE for r in requests]
        with torch.inference_mode(), context:
            output = model.generate(**inputs, **kwargs)
        prompt_width = inputs["input_ids"].shape[1]
        results = []
        for row, request in zip(output, requests, strict=True):
            new_tokens = row[prompt_width:].tolist()[: request.max_new_tokens]
            finished = tokenizer.eos_token_id in new_tokens
            if finished:
                new_tokens = new_tokens[: new_tokens.index(tokenizer.eos_token_id)]
            while new_tokens and new_tokens[-1] == tokenizer.pad_token_id:
                new_tokens.pop()
            text = tokenizer.decode(new_tokens, skip_special_tokens=True)
            results.append(GenerationResult(text, tuple(new_tokens), request.adapter, finished))
        return results

    def _record_step(self) -> None:
        self._last_step = time.monotonic()

    def stats(self) -> EngineStats:
        return self._stats

    async def check_health(self) -> None:
        """Unhealthy when not started, when a generation has made no decoding step for ``STALL_AFTER_S``, or
        when an idle engine fails to generate one token. A busy engine that is making progress is healthy."""
        self._require_started()
        busy_since = self._busy_since
        if busy_since is not None:
            if time.monotonic() - max(busy_since, self._last_step) > STALL_AFTER_S:
                raise EngineError(f"no decoding step for over {STALL_AFTER_S:g} s; the engine is stuck")
            return
        if self._lock.locked() or time.monotonic() - self._last_generated < PROBE_AFTER_S:
            return
        try:
            await self.generate([GenerationRequest("ok", None, 1)])
        except Exception as exc:
            raise EngineError(f"the engine failed to generate one token: {type(exc).__name__}: {exc}") from exc

    async def shutdown(self) -> None:
        async with self._lock:
            self._peft = self._base = self._tokenizer = None
            self._adapters.clear()

    def _require_started(self) -> None:
        if self._base is None:
            raise EngineError("engine not started: the base model is not loaded")


def _progress_criteria(record: Callable[[], None], requests: Sequence[GenerationRequest]) -> Any:
    """Stopping criteria for transformers' ``generate``: after each decoding step, ``record`` it (the
    engine's proof of progress for its health check) and stop the rows whose callers have gone."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Progress(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            record()
            gone = [request.abandoned for request in requests]
            return torch.tensor(gone, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Progress()])
