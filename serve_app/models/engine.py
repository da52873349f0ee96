"""The engine interface every model back-end implements, and the data that crosses it.

An engine owns one resident base model and the LoRA adapters loaded into it. Everything here is plain
data (dataclasses), so requests and results can cross process and deployment boundaries. Engines raise
``AdapterInvalid`` for an adapter that cannot load, ``AdapterNotLoaded`` for a request naming an adapter
they do not hold, and ``EngineError`` when they cannot serve (``serve_app.errors``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class AdapterSpec:
    """A LoRA adapter on disk, as the registry records it (``path`` already validated)."""

    name: str
    path: Path
    base_model: str
    rank: int
    answer_format: int = 1  # the version of the answer format it was trained for (``task.format_of``)


@dataclass(eq=False)
class Abandonment:
    """Marks a request whose caller stopped waiting (its request cancelled, a timeout): an engine may stop
    computing it. A plain flag, set on the event loop and read by an engine's worker thread."""

    happened: bool = False

    def set(self) -> None:
        self.happened = True


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    adapter: str | None = None  # None: the base model alone
    max_new_tokens: int = 48
    abandonment: Abandonment | None = field(default=None, compare=False, repr=False)
    answer_format: int | None = None  # constrain the output to this answer format where the engine can

    @property
    def abandoned(self) -> bool:
        return self.abandonment is not None and self.abandonment.happened


@dataclass(frozen=True)
class GenerationResult:
    text: str
    token_ids: tuple[int, ...]  # the generated tokens, end-of-sequence excluded (every engine alike)
    adapter: str | None
    finished: bool  # False when max_new_tokens cut the output short

    @property
    def decoding_steps(self) -> int:
        """What the answer cost: its tokens, and the end of sequence when it finished."""
        return len(self.token_ids) + int(self.finished)


@dataclass
class EngineStats:
    """What only the engine knows. Adapter loads and evictions are counted by ``AdapterResidency``."""

    base_model: str
    base_loads: int = 0
    cpu_threads: int | None = None  # the threads torch computes with on CPU (None on a GPU)
    generated_requests: int = 0
    batches: int = 0


@runtime_checkable
class Engine(Protocol):
    """A resident base model plus LoRA adapters. Implementations must be safe for concurrent callers.

    ``schedules_requests`` says who forms batches. True: the engine's own scheduler admits each concurrent
    ``generate`` call at its next decoding step (vLLM's continuous batching), so callers submit every
    request on its own and batching in front of it would only make requests wait. False: ``generate`` runs
    one batch at a time, so callers gather concurrent requests into batches (``EngineBatcher``)."""

    name: str
    schedules_requests: bool

    async def start(self) -> None:
        """Load the base model (once). Idempotent."""

    async def load_adapter(self, spec: AdapterSpec) -> None:
        """Make ``spec.name`` usable in ``generate``. ``AdapterInvalid`` for a bad adapter, ``EngineError``
        when the engine itself failed (out of memory, dead)."""

    async def unload_adapter(self, name: str) -> None:
        """Free an adapter's memory. Unknown names are ignored."""

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Greedy generation for a batch in which each request may name a different adapter (or none)."""

    def loaded_adapters(self) -> list[str]: ...

    def stats(self) -> EngineStats: ...

    async def check_health(self) -> None:
        """Raise ``EngineError`` unless the engine can generate."""

    async def shutdown(self) -> None: ...
