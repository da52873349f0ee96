"""Adapters: validating them on disk and the registry of them in PostgreSQL.

Every path the service reads an adapter from has passed ``validate_adapter``: a safe name, a folder that
resolves inside the configured adapter root (no ``..``, no symlink escape), a readable PEFT LoRA config
made for the resident base model, and weights present.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from serve_app.errors import AdapterExists, AdapterInvalid
from serve_app.models.engine import AdapterSpec
from serve_app.models.task import format_of
from serve_app.schemas import ADAPTER_NAME, ADAPTER_NAME_RULE, refuse_control_characters

#: Only safetensors: a ``.bin`` file is a pickle, which runs code when loaded.
_WEIGHT_FILE = "adapter_model.safetensors"
_COLUMNS = "name, base_model, path, rank, revision, created_at"


class AdapterIn(BaseModel):
    """A registration request (``POST /api/v1/adapters``)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(description="Safe identifier: letters, digits, '_' and '-', at most 64.")
    path: str = Field(min_length=1, max_length=1024, description="Folder, relative to the adapter root.")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not ADAPTER_NAME.fullmatch(value):
            raise ValueError(ADAPTER_NAME_RULE)
        return value

    @field_validator("path")
    @classmethod
    def _printable_path(cls, value: str) -> str:
        return refuse_control_characters(value, "path")


class AdapterOut(BaseModel):
    name: str
    base_model: str
    path: str
    rank: int
    revision: int = Field(description="New on every registration of the name; replicas load by revision.")
    created_at: datetime

    @property
    def ref(self) -> str:
        """``name@revision``: what replicas multiplex on and caches key on."""
        return adapter_ref(self.name, self.revision)


def adapter_ref(name: str, revision: int) -> str:
    return f"{name}@{revision}"


def parse_adapter_ref(ref: str) -> tuple[str, int | None]:
    """``job_22@7`` → ("job_22", 7); a bare name → (name, None): whatever revision is registered."""
    name, _, revision = ref.partition("@")
    return name, int(revision) if revision.isdigit() else None


def base_model_identity(model_path: Path) -> set[str]:
    """The names an adapter config may use for this base: its folder path, its folder name, its config name."""
    names = {str(model_path), str(model_path.resolve()), model_path.name}
    config = model_path / "config.json"
    if config.exists():
        declared = json.loads(config.read_text()).get("_name_or_path")
        if declared:
            names.add(declared)
    return names


def validate_adapter(
    name: str, path: str | Path, adapter_root: Path, base_model: Path, base_names: set[str] | None = None
) -> AdapterSpec:
    """Check an adapter folder and return its spec; ``AdapterInvalid`` says what is wrong.

    ``base_names`` are the names an adapter config may give the resident base (default: its folder and
    config names; add hub ids such as ``Qwen/Qwen2-0.5B`` for adapters trained against the hub copy).
    """
    if not ADAPTER_NAME.fullmatch(name):
        raise AdapterInvalid(f"invalid adapter name {name!r}")
    root = adapter_root.resolve()
    try:
        folder = (root / path).resolve()
    except (OSError, ValueError) as exc:  # embedded NUL, symlink loop, name too long
        raise AdapterInvalid(f"adapter path {str(path)!r} cannot be resolved ({exc})") from exc
    if not folder.is_relative_to(root):
        raise AdapterInvalid(f"adapter path {str(path)!r} is outside the adapter root")
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterInvalid(f"adapter {name!r}: no adapter_config.json in {folder.relative_to(root)}")
    try:
        config = json.loads(config_file.read_text())
        rank = int(config["r"])
        targets = config["target_modules"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AdapterInvalid(f"adapter {name!r}: unreadable adapter_config.json ({exc})") from exc
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterInvalid(f"adapter {name!r}: only LoRA adapters are supported, not {config.get('peft_type')}")
    declared_base = config.get("base_model_name_or_path") or ""
    if declared_base not in (base_names or base_model_identity(base_model)):
        raise AdapterInvalid(
            f"adapter {name!r} was trained for base model {declared_base!r}, not the resident {base_model.name!r}"
        )
    modules = _linear_module_names(base_model)
    target_list = [targets] if isinstance(targets, str) else list(targets)
    unknown = [t for t in target_list if modules and t not in modules]
    if unknown:
        raise AdapterInvalid(f"adapter {name!r} targets modules the base model lacks: {unknown}")
    weights = folder / _WEIGHT_FILE
    if not weights.is_file():
        pickled = " (adapter_model.bin is a pickle, which runs code when loaded: save with safetensors)"
        found = pickled if (folder / "adapter_model.bin").exists() else ""
        raise AdapterInvalid(f"adapter {name!r}: no {_WEIGHT_FILE} in {folder.relative_to(root)}{found}")
    _check_shapes(name, weights, base_model, rank)
    answer_format = format_of(folder).version  # refuses a format this service cannot read
    return AdapterSpec(name=name, path=folder, base_model=declared_base, rank=rank, answer_format=answer_format)


def _check_shapes(name: str, weights: Path, base_model: Path, rank: int) -> None:
    """Every LoRA matrix must fit the base's projection it targets (vLLM loads a misfit silently)."""
    shapes = _safetensors_shapes(name, weights)
    expected = _projection_shapes(base_model)
    for tensor, shape in shapes.items():
        if ".lora_A." not in tensor and ".lora_B." not in tensor:
            continue
        module = tensor.split(".lora_")[0].rsplit(".", 1)[-1]
        if module not in expected:
            continue
        in_features, out_features = expected[module]
        want = [rank, in_features] if ".lora_A." in tensor else [out_features, rank]
        if shape != want:
            raise AdapterInvalid(
                f"adapter {name!r} does not fit the resident base: {tensor} has shape {shape}, expected {want}"
            )


def _safetensors_shapes(name: str, weights: Path) -> dict[str, list[int]]:
    """Tensor shapes from a safetensors header (8-byte little-endian length, then JSON), without loading."""
    try:
        with weights.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 0 < length <= 100_000_000:
                raise ValueError("bad header length")
            header = json.loads(handle.read(length))
        return {key: list(value["shape"]) for key, value in header.items() if key != "__metadata__"}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AdapterInvalid(f"adapter {name!r}: unreadable weights file {weights.name} ({exc})") from exc


def _projection_shapes(base_model: Path) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of each projection, from the base's config; empty when unknown."""
    config_file = base_model / "config.json"
    if not config_file.exists():
        return {}
    config = json.loads(config_file.read_text())
    try:
        hidden, heads = config["hidden_size"], config["num_attention_heads"]
        head_dim = config.get("head_dim") or hidden // heads
        kv_heads = config.get("num_key_value_heads") or heads
        inter = config["intermediate_size"]
    except KeyError:
        return {}
    return {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv_heads * head_dim),
        "v_proj": (hidden, kv_heads * head_dim),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }


def _linear_module_names(base_model: Path) -> set[str]:
    """Projection names of the base architecture (from its config); empty when unknown."""
    config_file = base_model / "config.json"
    if not config_file.exists():
        return set()
    model_type = json.loads(config_file.read_text()).get("model_type", "")
    if model_type in {"qwen2", "qwen3", "llama", "mistral"}:
        return {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    return set()


class AdapterRegistry:
    """The ``adapters`` table. Writes are single statements, so each is its own transaction."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def register(self, spec: AdapterSpec, relative_path: str) -> AdapterOut:
        try:
            row = await self.pool.fetchrow(
                f"""INSERT INTO adapters (name, base_model, path, rank) VALUES ($1, $2, $3, $4)
                   RETURNING {_COLUMNS}""",  # noqa: S608 - a constant column list
                spec.name,
                spec.base_model,
                relative_path,
                spec.rank,
            )
        except asyncpg.UniqueViolationError as exc:
            raise AdapterExists(f"adapter {spec.name!r} is already registered") from exc
        return AdapterOut(**dict(row))

    async def upsert(self, spec: AdapterSpec, relative_path: str) -> AdapterOut:
        row = await self.pool.fetchrow(
            f"""INSERT INTO adapters (name, base_model, path, rank) VALUES ($1, $2, $3, $4)
               ON CONFLICT (name) DO UPDATE
               SET base_model = EXCLUDED.base_model, path = EXCLUDED.path, rank = EXCLUDED.rank,
                   revision = nextval('adapter_revision'), created_at = now()
               RETURNING {_COLUMNS}""",  # noqa: S608 - a constant column list
            spec.name,
            spec.base_model,
            relative_path,
            spec.rank,
        )
        return AdapterOut(**dict(row))

    async def get(self, name: str) -> AdapterOut | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM adapters WHERE name = $1",  # noqa: S608 - a constant column list
            name,
        )
        return AdapterOut(**dict(row)) if row else None

    async def list(self) -> list[AdapterOut]:
        rows = await self.pool.fetch(
            "SELECT name, base_model, path, rank, revision, created_at FROM adapters ORDER BY name"
        )
        return [AdapterOut(**dict(row)) for row in rows]

    async def delete(self, name: str) -> bool:
        return (await self.pool.execute("DELETE FROM adapters WHERE name = $1", name)) == "DELETE 1"
