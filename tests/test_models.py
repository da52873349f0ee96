"""Engines with a resident base model and LoRA adapters, checked token for token against plain
transformers + peft; validation, the registry and the model's answer parsing. Residency: test_residency."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from serve_app.config import ModelConfig
from serve_app.errors import AdapterError, AdapterNotLoaded
from serve_app.models.adapters import AdapterIn, AdapterRegistry, validate_adapter
from serve_app.models.demo import DemoModel
from serve_app.models.engine import AdapterSpec, Engine, GenerationRequest
from serve_app.models.engines import make_engine
from serve_app.models.hf_engine import HFEngine
from serve_app.models.paths import ModelPaths
from serve_app.models.quantize import Int8Linear
from serve_app.models.task import FORMATS, CompactFormat, JsonFormat
from serve_app.models.tiny import build_adapter, build_base_model, make_tiny_model

#: The tiny adapters carry no answer_format.json: format 1, as adapters from before formats were versioned.
PROMPTS = [FORMATS[1].prompt(q) for q in ("华夏银行江油西山支行", "工行徐州经济开发区支行", "深圳农商银行")]
MAX_NEW = 12


#: vLLM on CPU: a 1 GiB KV cache and a small share of host memory are plenty for the demo model.
VLLM_CPU_ARGS = {"memory_utilization": 0.3}


def require_vllm():
    """vLLM is part of every install (``scripts/install``): a broken ``import vllm`` fails these tests,
    never skips them."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    import vllm  # noqa: F401


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoModel:
    return make_tiny_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def adapter_root(demo: DemoModel) -> Path:
    return demo.base.parent / "adapters"


@pytest.fixture(scope="session")
def reference(demo: DemoModel) -> dict[tuple[str | None, str], tuple[int, ...]]:
    """Greedy tokens from a standalone transformers(+peft) model per (adapter, prompt), one prompt at a time."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_flush_denormal(True)
    tokenizer = AutoTokenizer.from_pretrained(demo.base)
    expected = {}
    for adapter in (None, "job_22", "job_23"):
        model = AutoModelForCausalLM.from_pretrained(demo.base, dtype=torch.float32)
        if adapter:
            model = PeftModel.from_pretrained(model, demo.adapters[adapter])
        model.eval()
        for prompt in PROMPTS:
            inputs = tokenizer(prompt, return_tensors="pt")
            with torch.inference_mode():
                out = model.generate(
                    **inputs, max_new_tokens=MAX_NEW, do_sample=False, pad_token_id=tokenizer.pad_token_id
                )
            tokens = out[0, inputs["input_ids"].shape[1] :].tolist()
            if tokenizer.eos_token_id in tokens:
                tokens = tokens[: tokens.index(tokenizer.eos_token_id)]
            expected[(adapter, prompt)] = tuple(tokens)
    return expected


async def _started(engine: Engine, demo: DemoModel, adapter_root: Path) -> Engine:
    await engine.start()
    for name in demo.adapters:
        await engine.load_adapter(validate_adapter(name, name, adapter_root, demo.base))
    return engine


@pytest.fixture(scope="module")
async def hf_engine(demo: DemoModel, adapter_root: Path):
    engine = await _started(HFEngine(demo.base), demo, adapter_root)
    yield engine
    await engine.shutdown()


@pytest.fixture(scope="module")
async def vllm_engine(demo: DemoModel, adapter_root: Path):
    require_vllm()
    from serve_app.models.vllm_engine import VLLMEngine

    engine = VLLMEngine(demo.base, max_adapters=2, structured_output=False, **VLLM_CPU_ARGS)
    engine = await _started(engine, demo, adapter_root)
    yield engine
    await engine.shutdown()


@pytest.fixture(params=["hf", pytest.param("vllm", marks=[pytest.mark.vllm, pytest.mark.slow])])
def engine(request: pytest.FixtureRequest) -> Engine:
    return request.getfixturevalue(f"{request.param}_engine")


async def test_alone_and_mixed_batches_match_the_reference(engine: Engine, reference) -> None:
    for adapter in (None, "job_22", "job_23"):
        for prompt in PROMPTS:
            [alone] = await engine.generate([GenerationRequest(prompt, adapter, MAX_NEW)])
            assert alone.token_ids == reference[(adapter, prompt)], (adapter, prompt)
    mixed = [GenerationRequest(p, a, MAX_NEW) for p in PROMPTS for a in ("job_23", None, "job_22")]
    results = await engine.generate(mixed)
    assert [r.token_ids for r in results] == [reference[(m.adapter, m.prompt)] for m in mixed]
    assert len({reference[(a, PROMPTS[0])] for a in (None, "job_22", "job_23")}) == 3  # adapters matter


async def test_adapter_churn_never_reloads_the_base(engine: Engine, demo: DemoModel, adapter_root: Path) -> None:
    spec = validate_adapter("job_22", "job_22", adapter_root, demo.base)
    await engine.unload_adapter("job_22")
    assert "job_22" not in engine.loaded_adapters()
    with pytest.raises(AdapterNotLoaded, match="not loaded"):
        await engine.generate([GenerationRequest(PROMPTS[0], "job_22", 4)])
    await engine.load_adapter(spec)
    await engine.load_adapter(spec)  # idempotent
    assert engine.loaded_adapters().count("job_22") == 1
    assert engine.stats().base_loads == 1


async def test_corrupt_adapter_is_refused_and_the_rest_keep_serving(
    engine: Engine, demo: DemoModel, adapter_root: Path, reference
) -> None:
    broken = adapter_root / f"broken_{engine.name}"
    shutil.copytree(demo.adapters["job_22"], broken, dirs_exist_ok=True)
    (broken / "adapter_model.safetensors").write_bytes(b"\x00not a safetensors file")
    with pytest.raises(AdapterError, match="unreadable weights"):
        validate_adapter(broken.name, broken.name, adapter_root, demo.base)
    # Even past validation (a file corrupted after it was checked), the engine refuses it cleanly.
    spec = AdapterSpec(broken.name, broken, "demo-base", 8)
    with pytest.raises(AdapterError, match=broken.name):
        await engine.load_adapter(spec)
        await engine.generate([GenerationRequest(PROMPTS[0], broken.name, 4)])  # vLLM loads lazily
    results = await engine.generate([GenerationRequest(PROMPTS[0], a, MAX_NEW) for a in ("job_23", None)])
    assert [r.token_ids for r in results] == [reference[("job_23", PROMPTS[0])], reference[(None, PROMPTS[0])]]


async def test_adapter_of_another_shape_is_refused(demo: DemoModel, adapter_root: Path, tmp_path: Path) -> None:
    other_base = tmp_path / demo.base.name  # same name, another width: only the shapes can tell
    build_base_model(other_base, hidden_size=64)
    build_adapter(other_base, adapter_root / "wrong_shape", seed=1)
    with pytest.raises(AdapterError, match="does not fit the resident base"):
        validate_adapter("wrong_shape", "wrong_shape", adapter_root, demo.base)


def test_validation_rejects_names_paths_and_foreign_bases(demo: DemoModel, adapter_root: Path, tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="invalid adapter name"):
        validate_adapter("../job_22", "job_22", adapter_root, demo.base)
    with pytest.raises(AdapterError, match="outside the adapter root"):
        validate_adapter("escape", "../../etc", adapter_root, demo.base)
    (adapter_root / "link_out").unlink(missing_ok=True)
    (adapter_root / "link_out").symlink_to(tmp_path)
    with pytest.raises(AdapterError, match="outside the adapter root"):
        validate_adapter("link_out", "link_out", adapter_root, demo.base)
    foreign = adapter_root / "foreign"
    shutil.copytree(demo.adapters["job_23"], foreign, dirs_exist_ok=True)
    config = json.loads((foreign / "adapter_config.json").read_text())
    (foreign / "adapter_config.json").write_text(json.dumps(config | {"base_model_name_or_path": "Qwen/Qwen2-7B"}))
    with pytest.raises(AdapterError, match="trained for base model 'Qwen/Qwen2-7B'"):
        validate_adapter("foreign", "foreign", adapter_root, demo.base)
    (foreign / "adapter_config.json").write_text(json.dumps(config | {"target_modules": ["fc9"]}))
    with pytest.raises(AdapterError, match="lacks"):
        validate_adapter("foreign", "foreign", adapter_root, demo.base)
    with pytest.raises(AdapterError, match=r"no adapter_config\.json"):
        validate_adapter("missing", "missing", adapter_root, demo.base)
    pickled = adapter_root / "pickled"  # weights as a pickle (adapter_model.bin) run code when loaded
    shutil.copytree(demo.adapters["job_23"], pickled, dirs_exist_ok=True)
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    with pytest.raises(AdapterError, match="is a pickle"):
        validate_adapter("pickled", "pickled", adapter_root, demo.base)
    with pytest.raises(ValueError, match="adapter names"):
        AdapterIn(name="x;DROP TABLE adapters", path="x")


async def test_registry_round_trip(sample_pool, demo: DemoModel, adapter_root: Path) -> None:
    registry = AdapterRegistry(sample_pool)
    spec = validate_adapter("job_22", "job_22", adapter_root, demo.base)
    await registry.delete("job_22")
    created = await registry.register(spec, "job_22")
    assert (created.name, created.base_model, created.path, created.rank) == ("job_22", "demo-base", "job_22", 8)
    with pytest.raises(AdapterError, match="already registered"):
        await registry.register(spec, "job_22")
    assert created in await registry.list()  # other tests share this database and its adapters
    assert (await registry.get("job_22")).rank == 8
    assert await registry.delete("job_22") is True
    assert await registry.get("job_22") is None and "job_22" not in [a.name for a in await registry.list()]
    assert await registry.delete("job_22") is False


@pytest.mark.parametrize(
    ("text", "finished", "valid", "reason"),
    [
        ('{"bank":"华夏银行","province":null,"city":"绵阳市","district":null,"branch":"西山支行"}', True, True, None),
        ('{"bank":"华夏银行","city":"绵', False, False, "cut short"),
        ("华夏银行", True, False, "not JSON"),
        ('["华夏银行"]', True, False, "not an object"),
        ('{"bank":"华夏银行","ceo":"x"}', True, False, "entity schema"),
        ('{"bank":42}', True, False, "entity schema"),
    ],
)
def test_json_answers_are_parsed_or_reported(text: str, finished: bool, valid: bool, reason: str | None) -> None:
    answer = JsonFormat().read(text, finished)
    assert answer.valid is valid
    if valid:
        assert answer.entities.city == "绵阳市" and answer.entities.district is None
    else:
        assert reason in answer.error and answer.entities is None


@pytest.mark.vllm
@pytest.mark.slow
async def test_vllm_structured_output_follows_each_requests_answer_format(demo: DemoModel, adapter_root: Path) -> None:
    # The random tiny model, left to itself, writes neither format; constrained, each request gets its own.
    require_vllm()
    from serve_app.models.vllm_engine import VLLMEngine

    engine = VLLMEngine(demo.base, max_adapters=2, structured_output=True, **VLLM_CPU_ARGS)
    engine = await _started(engine, demo, adapter_root)
    requests = [
        GenerationRequest(FORMATS[version].prompt("华夏银行江油西山支行"), adapter, 64, answer_format=version)
        for version in (1, 2)
        for adapter in (None, "job_22")
    ]
    try:
        results = await engine.generate(requests)
    finally:
        await engine.shutdown()
    for request, result in zip(requests, results, strict=True):
        if request.answer_format == 1:
            assert result.text.startswith('{"bank":')
            answer = FORMATS[1].read(result.text, result.finished)
            assert answer.valid or "cut short" in answer.error
        else:
            assert re.fullmatch(CompactFormat.pattern, result.text) and result.finished, result.text
            answer = FORMATS[2].read(result.text)
            # The pattern admits a branch that refers to a place the random model left empty: the reader says so.
            assert answer.valid or "but no" in answer.error, answer.error


def test_make_engine_builds_what_the_config_names(demo: DemoModel) -> None:
    paths = ModelPaths.resolve(demo.base.parent, demo.base)
    engine = make_engine(ModelConfig(quantization="int8", tunables={"max_batch_size": 1}), paths)
    assert isinstance(engine, HFEngine) and engine.quantization == "int8" and not engine.schedules_requests
    made = []

    def fake_vllm_factory(config: ModelConfig, base: Path) -> str:
        made.append((config.max_adapters_per_replica, base))
        return "the fake engine"

    config = ModelConfig(engine="vllm", max_adapters_per_replica=3)
    assert make_engine(config, paths, {"vllm": fake_vllm_factory}) == "the fake engine"
    assert made == [(3, demo.base)]
    with pytest.raises(ValidationError, match="int8 is for engine hf on device cpu"):
        ModelConfig(engine="vllm", quantization="int8", tunables={"max_batch_size": 1})
    with pytest.raises(ValidationError, match="fp8 is for engine vllm"):
        ModelConfig(quantization="fp8")
    with pytest.raises(ValidationError, match="int8 reads one request at a time"):
        ModelConfig(quantization="int8")  # the default batch of 16 would make readings depend on each other


async def test_an_int8_base_still_applies_full_precision_adapters(
    demo: DemoModel, adapter_root: Path, reference
) -> None:
    engine = await _started(HFEngine(demo.base, quantization="int8"), demo, adapter_root)
    try:
        int8_layers = [m for m in engine._peft.modules() if isinstance(m, Int8Linear)]
        assert len(int8_layers) == 2 * 7  # every projection of the tiny model's two blocks, not the head
        routes = (None, "job_22", "job_23")
        alone = {}
        for adapter in routes:
            [result] = await engine.generate([GenerationRequest(PROMPTS[0], adapter, MAX_NEW)])
            alone[adapter] = result.token_ids
        assert len(set(alone.values())) == 3  # each adapter still changes the output
        assert alone[None] != reference[(None, PROMPTS[0])]  # the weights really are int8: the tokens differ
        mixed = await engine.generate([GenerationRequest(PROMPTS[0], a, MAX_NEW) for a in routes])
        # Activations are quantized with one scale per batch: a reading depends on its neighbours. This is
        # why the config lets int8 read only one request at a time.
        assert [r.token_ids for r in mixed] != [alone[a] for a in routes]
        for name in demo.adapters:
            await engine.unload_adapter(name)
        [bare] = await engine.generate([GenerationRequest(PROMPTS[0], None, MAX_NEW)])
        assert bare.token_ids == alone[None]
    finally:
        await engine.shutdown()
