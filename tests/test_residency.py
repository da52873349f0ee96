"""Adapter residency and the model worker on a real HFEngine and the real registry (PostgreSQL):
one load path, pinning against eviction races, revisions on re-registration, honest errors."""

from __future__ import annotations

import asyncio
import itertools
import random
import shutil
import time
from pathlib import Path

import pytest

from serve_app.api.errors import render
from serve_app.config import ModelTunables
from serve_app.errors import AdapterInvalid, AdapterNotLoaded, EngineError, UnknownAdapter
from serve_app.models.adapters import AdapterRegistry
from serve_app.models.demo import DemoModel
from serve_app.models.engine import Abandonment, GenerationRequest, GenerationResult
from serve_app.models.hf_engine import HFEngine
from serve_app.models.paths import ModelPaths
from serve_app.models.residency import AdapterResidency
from serve_app.models.server import ModelWorker
from serve_app.models.tiny import build_adapter
from tests.test_models import (  # noqa: F401 - the shared model fixtures
    MAX_NEW,
    PROMPTS,
    adapter_root,
    demo,
    reference,
    require_vllm,
)

_names = itertools.count()


@pytest.fixture(scope="module")
async def engine(demo: DemoModel):  # noqa: F811
    engine = HFEngine(demo.base)
    await engine.start()
    yield engine
    await engine.shutdown()


@pytest.fixture
async def tenants(sample_pool, demo: DemoModel, adapter_root: Path):  # noqa: F811
    """Three registered adapters (two of them the demo's job_22 and job_23 weights), removed afterwards."""
    build_adapter(demo.base, adapter_root / "job_24", seed=24)
    registry = AdapterRegistry(sample_pool)
    paths = ModelPaths.resolve(demo.base.parent, demo.base, adapter_root)
    names = {}
    for folder in ("job_22", "job_23", "job_24"):
        name = f"t{next(_names)}_{folder}"
        await registry.register(paths.validate(name, folder), folder)
        names[folder] = name
    yield registry, paths, names
    for name in names.values():
        await registry.delete(name)


def _worker(engine: HFEngine, registry, paths, capacity: int | None) -> ModelWorker:
    residency = AdapterResidency(engine, registry, paths, capacity=capacity)
    return ModelWorker(engine, residency, ModelTunables(max_new_tokens=MAX_NEW), "hf")


async def test_churn_more_adapters_than_slots_never_fails_and_matches_a_fresh_load(
    engine,
    tenants,
    reference,  # noqa: F811
) -> None:
    """60 concurrent requests over 3 adapters with 1 slot: evictions race every request, none fails,
    and every output is the token-for-token output of a freshly loaded adapter."""
    registry, paths, names = tenants
    worker = _worker(engine, registry, paths, capacity=1)
    order = [("job_22", names["job_22"]), ("job_23", names["job_23"]), (None, None)] * 20
    random.Random(7).shuffle(order)

    async def ask(adapter: str | None, prompt: str):
        ref = None if adapter is None else await worker.load(adapter)
        [result] = await worker.generate_batch([GenerationRequest(prompt, ref, MAX_NEW)])
        return result

    results = await asyncio.gather(*(ask(name, PROMPTS[i % 3]) for i, (_, name) in enumerate(order)))
    assert not [r for r in results if isinstance(r, Exception)]
    for i, ((folder, _), result) in enumerate(zip(order, results, strict=True)):
        assert result.token_ids == reference[(folder, PROMPTS[i % 3])], (folder, i)
    stats = worker.residency.stats
    assert stats.evictions > 0 and stats.failures == 0
    # Deferred unloads caught up once the batches ended: the engine holds exactly what the residency says.
    assert sorted(worker.residency.resident) == engine.loaded_adapters() != []
    await worker.residency.clear()
    assert len(worker.residency._locks) == 0  # per-ref locks live only while someone waits for them


async def test_a_release_while_in_use_is_deferred_and_a_new_request_cancels_it(engine, tenants) -> None:
    """The old race: an eviction's unload landing after a new request saw the adapter loaded."""
    registry, paths, names = tenants
    residency = AdapterResidency(engine, registry, paths)
    ref = await residency.acquire(names["job_22"])
    async with residency.using([ref]):
        await residency.release(ref)  # Serve evicted it mid-batch: deferred
        assert residency.holds(ref)
        assert await residency.acquire(ref) == ref  # a request for it arrives: the unload is cancelled
    assert residency.holds(ref) and ref in engine.loaded_adapters()
    [result] = await engine.generate([GenerationRequest(PROMPTS[0], ref, 4)])
    assert result.adapter == ref
    await residency.release(ref)
    assert ref not in engine.loaded_adapters()


async def test_an_unload_queued_before_a_batch_is_a_clean_not_loaded_error(engine, tenants) -> None:
    """HFEngine checks a batch's adapters under its lock: an unload that got the lock first makes the batch
    fail with AdapterNotLoaded (which the worker retries), never with peft's own error mid-generate."""
    registry, paths, names = tenants
    residency = AdapterResidency(engine, registry, paths)
    ref = await residency.acquire(names["job_23"])
    async with engine._lock:  # hold the engine busy: both calls below queue for it, unload first
        unload = asyncio.create_task(engine.unload_adapter(ref))
        await asyncio.sleep(0)
        batch = asyncio.create_task(engine.generate([GenerationRequest(PROMPTS[0], ref, 4)]))
        await asyncio.sleep(0)
    await unload
    with pytest.raises(AdapterNotLoaded):
        await batch
    [result] = await engine.generate([GenerationRequest(PROMPTS[0], None, 4)])  # the engine still serves
    assert result.token_ids


async def test_re_registering_a_name_serves_the_new_weights(engine, tenants, reference) -> None:  # noqa: F811
    registry, paths, names = tenants
    worker = _worker(engine, registry, paths, capacity=4)
    name = names["job_22"]
    first = await worker.load(name)
    [old] = await worker.generate_batch([GenerationRequest(PROMPTS[0], first, MAX_NEW)])
    assert old.token_ids == reference[("job_22", PROMPTS[0])]
    updated = await registry.upsert(paths.validate(name, "job_23"), "job_23")  # new weights, same name
    assert updated.ref != first
    second = await worker.load(name)  # what a request resolving the name now gets
    assert second == updated.ref
    assert worker.residency.resident == [second] and first not in engine.loaded_adapters()  # old one retired
    [new] = await worker.generate_batch([GenerationRequest(PROMPTS[0], second, MAX_NEW)])
    assert new.token_ids == reference[("job_23", PROMPTS[0])]
    # A caller still holding the old ref is served the current weights, under the current ref.
    [late] = await worker.generate_batch([GenerationRequest(PROMPTS[0], first, MAX_NEW)])
    assert (late.adapter, late.token_ids) == (second, new.token_ids)
    await worker.residency.clear()


async def test_deleted_or_unknown_adapters_are_404_and_broken_ones_422(engine, tenants, adapter_root: Path) -> None:  # noqa: F811
    registry, paths, names = tenants
    worker = _worker(engine, registry, paths, capacity=2)
    await registry.delete(names["job_24"])
    with pytest.raises(UnknownAdapter) as deleted:
        await worker.read("华夏银行", names["job_24"])
    assert render(deleted.value)[:2] == (404, {"error": {"code": "unknown_model", "message": deleted.value.message}})
    broken = adapter_root / "broken_residency"
    shutil.copytree(adapter_root / "job_22", broken, dirs_exist_ok=True)
    name = f"t{next(_names)}_broken"
    await registry.register(paths.validate(name, broken.name), broken.name)
    (broken / "adapter_model.safetensors").write_bytes(b"\x00 damaged after registration")
    try:
        with pytest.raises(AdapterInvalid) as damaged:
            await worker.read("华夏银行", name)
        assert render(damaged.value)[0] == 422 and worker.residency.stats.failures == 1
        # A batch mixing it with a good adapter fails only the damaged rows.
        good = await worker.load(names["job_22"])
        requests = [GenerationRequest(PROMPTS[0], good, 4), GenerationRequest(PROMPTS[0], name, 4)]
        ok, failed = await worker.generate_batch(requests)
        assert ok.token_ids and isinstance(failed, AdapterInvalid)
    finally:
        await registry.delete(name)
        await worker.residency.clear()


async def test_hf_health_check_probes_an_idle_engine_and_flags_a_stuck_one(demo: DemoModel, monkeypatch) -> None:  # noqa: F811
    from serve_app.models import hf_engine

    engine = HFEngine(demo.base)
    with pytest.raises(EngineError, match="not started"):
        await engine.check_health()
    await engine.start()
    try:
        await engine.check_health()  # idle and never used: one token is generated
        assert engine.stats().batches == 1
        monkeypatch.setattr(hf_engine, "PROBE_AFTER_S", 0.0)

        def broken(requests):
            raise RuntimeError("the model's weights are gone")

        monkeypatch.setattr(engine, "_generate", broken)
        with pytest.raises(EngineError, match="failed to generate one token"):
            await engine.check_health()
        engine._busy_since = engine._last_step = 0.0  # a generation that started at the epoch, no step since
        with pytest.raises(EngineError, match="stuck"):
            await engine.check_health()
    finally:
        engine._busy_since = None
        await engine.shutdown()


async def test_hf_health_check_passes_a_long_generation_that_makes_progress(engine: HFEngine) -> None:
    # The CPU step load's batches of 32 readings ran for minutes: a whole-generation limit declared the
    # engine stuck and Serve replaced a replica that was working. Only a generation without steps is stuck.
    before = time.monotonic()
    await engine.generate([GenerationRequest("华夏银行", None, 4)] * 2)
    assert engine._last_step > before  # transformers called the step recorder
    try:
        engine._busy_since = 0.0  # running since the epoch …
        engine._last_step = time.monotonic()  # … and stepping
        await engine.check_health()
        engine._last_step = 0.0  # … and no step since the epoch
        with pytest.raises(EngineError, match="no decoding step"):
            await engine.check_health()
    finally:
        engine._busy_since = None  # the shared engine is idle again


async def test_hf_engine_stops_the_rows_whose_callers_have_gone(engine: HFEngine) -> None:
    gone = Abandonment()
    gone.set()
    kept, dropped = await engine.generate(
        [GenerationRequest(PROMPTS[0], None, 16), GenerationRequest(PROMPTS[0], None, 16, gone)]
    )
    assert len(dropped.token_ids) <= 1 and len(kept.token_ids) > 4


class FakeEngine:
    """Fake of an engine (the residency and the worker are what is tested): records the size of each
    ``generate`` call and how many overlap; answers in format 1 (the tiny adapters' format) after
    ``step_s``, or never when ``stalled``."""

    name = "fake"

    def __init__(self, schedules_requests: bool, step_s: float = 0.05, stalled: bool = False):
        self.schedules_requests = schedules_requests
        self.step_s, self.stalled = step_s, stalled
        self.calls: list[int] = []
        self.requests: list[GenerationRequest] = []
        self.in_flight = self.peak = 0
        self.loaded: set[str] = set()
        self.arrived = asyncio.Event()

    async def start(self) -> None:
        pass

    async def load_adapter(self, spec) -> None:
        self.loaded.add(spec.name)

    async def unload_adapter(self, name: str) -> None:
        self.loaded.discard(name)

    async def generate(self, requests) -> list[GenerationResult]:
        self.calls.append(len(requests))
        self.requests.extend(requests)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.arrived.set()
        try:
            await (asyncio.Event().wait() if self.stalled else asyncio.sleep(self.step_s))
        finally:
            self.in_flight -= 1
        return [GenerationResult('{"bank":"华夏银行"}', (1,), r.adapter, True) for r in requests]

    def loaded_adapters(self) -> list[str]:
        return sorted(self.loaded)


@pytest.mark.parametrize(("schedules", "calls", "peak"), [(True, [1] * 6, 6), (False, [6], 1)])
async def test_the_engine_decides_how_readings_are_batched(
    tenants, schedules: bool, calls: list[int], peak: int
) -> None:
    # vLLM admits each request at its next step: six readings go to it at once, each alone. An engine that
    # runs one batch at a time gets them gathered into one batch by the worker's batcher.
    registry, paths, names = tenants
    engine = FakeEngine(schedules_requests=schedules)
    worker = ModelWorker(engine, AdapterResidency(engine, registry, paths), ModelTunables(max_new_tokens=MAX_NEW), "x")
    assert (worker.batcher is None) is schedules
    answers = await asyncio.gather(*(worker.read("华夏银行江油西山支行", names["job_22"]) for _ in range(6)))
    assert all(a.valid and a.entities.bank == "华夏银行" for a in answers)
    assert engine.calls == calls and engine.peak == peak
    assert {r.answer_format for r in engine.requests} == {1}  # the tiny adapters' format, from their folder
    assert all(r.prompt.startswith("Bank branch to JSON.") for r in engine.requests)


@pytest.mark.vllm
@pytest.mark.slow
async def test_vllm_readings_go_straight_to_its_scheduler_and_match_the_reference(
    demo: DemoModel,  # noqa: F811
    tenants,
    reference,  # noqa: F811
) -> None:
    # Nine concurrent readings over two adapters and the base: each is its own generate() call, admitted
    # by vLLM's scheduler while the others run, and each equals a standalone transformers + peft run.
    require_vllm()
    from serve_app.models.vllm_engine import VLLMEngine

    registry, paths, names = tenants
    engine = VLLMEngine(demo.base, max_adapters=3, structured_output=False, memory_utilization=0.3)
    worker = ModelWorker(
        engine, AdapterResidency(engine, registry, paths), ModelTunables(max_new_tokens=MAX_NEW), "vllm"
    )
    await worker.start([])
    try:
        assert worker.batcher is None

        async def ask(folder: str | None, prompt: str) -> tuple[str | None, str, GenerationResult]:
            ref = None if folder is None else await worker.load(names[folder])
            result = await worker.submit(GenerationRequest(prompt, ref, MAX_NEW))
            assert isinstance(result, GenerationResult)
            return folder, prompt, result

        routes = [(folder, prompt) for prompt in PROMPTS for folder in ("job_22", "job_23", None)]
        for folder, prompt, result in await asyncio.gather(*(ask(f, p) for f, p in routes)):
            assert result.token_ids == reference[(folder, prompt)]
        assert engine.stats().batches == 1 + len(routes)  # the warm-up, then one call per reading
    finally:
        await engine.shutdown()


@pytest.mark.parametrize("schedules", [True, False])
async def test_a_cancelled_model_read_abandons_its_generation(tenants, schedules: bool) -> None:
    # The ingress gave up (extract_timeout_s): Serve cancels the read; the request it queued is marked, so
    # the engine stops computing it instead of finishing a reading nobody waits for.
    registry, paths, names = tenants
    engine = FakeEngine(schedules_requests=schedules, stalled=True)
    worker = ModelWorker(engine, AdapterResidency(engine, registry, paths), ModelTunables(), "x")
    read = asyncio.create_task(worker.read("华夏银行江油西山支行", names["job_22"]))
    await engine.arrived.wait()
    assert not engine.requests[0].abandoned
    read.cancel()
    with pytest.raises(asyncio.CancelledError):
        await read
    assert engine.requests[0].abandoned


class _FakeStreamingLLM:
    """Fake of vLLM's AsyncLLM for one request: yields an output per step until its stream is closed."""

    def __init__(self) -> None:
        self.steps = 0
        self.closed = False
        self.third_step = asyncio.Event()

    async def generate(self, prompt, params, request_id, lora_request):
        from types import SimpleNamespace

        try:
            while True:
                self.steps += 1
                if self.steps == 3:
                    self.third_step.set()
                completion = SimpleNamespace(text="x" * self.steps, token_ids=[1] * self.steps, finish_reason=None)
                yield SimpleNamespace(outputs=[completion])
                await asyncio.sleep(0)
        finally:
            self.closed = True  # vLLM aborts the request here (GeneratorExit)


@pytest.mark.vllm
async def test_vllm_engine_closes_the_stream_of_a_request_whose_caller_has_gone(demo: DemoModel) -> None:  # noqa: F811
    require_vllm()
    from serve_app.models.vllm_engine import VLLMEngine

    engine = VLLMEngine(demo.base)
    engine._engine = fake = _FakeStreamingLLM()
    gone = Abandonment()
    generation = asyncio.create_task(engine._generate_one(GenerationRequest("p", None, 10_000, gone), None))
    await fake.third_step.wait()
    gone.set()
    result = await asyncio.wait_for(generation, 5)
    assert fake.closed and not result.finished and len(result.token_ids) < 10


class _FakeAsyncLLM:
    """Fake of vLLM's AsyncLLM for load failures: ``add_lora`` raises what vLLM's client re-raises."""

    def __init__(self, message: str, healthy: bool):
        self.message, self.healthy = message, healthy

    async def add_lora(self, request) -> None:
        raise Exception(f"Call to add_lora method failed: {self.message}")

    async def check_health(self) -> None:
        if not self.healthy:
            raise RuntimeError("EngineCore died")


@pytest.mark.parametrize(
    ("message", "healthy", "error", "status"),
    [
        ("Error while deserializing header: header too large", True, AdapterInvalid, 422),
        ("CUDA out of memory. Tried to allocate 20.00 MiB", True, EngineError, 503),
        ("Connection reset by peer", False, EngineError, 503),
    ],
)
@pytest.mark.vllm
async def test_vllm_load_failures_blame_the_adapter_only_when_it_is_the_adapter(
    demo: DemoModel,  # noqa: F811
    message,
    healthy,
    error,
    status,
) -> None:
    require_vllm()
    from serve_app.models.engine import AdapterSpec
    from serve_app.models.vllm_engine import VLLMEngine

    engine = VLLMEngine(demo.base)
    engine._engine = _FakeAsyncLLM(message, healthy)
    with pytest.raises(error) as raised:
        await engine.load_adapter(AdapterSpec("job_22", demo.adapters["job_22"], "demo-base", 8))
    assert render(raised.value)[0] == status and engine.loaded_adapters() == []
