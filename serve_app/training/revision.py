"""A training run from start to end: a new revision of a tenant's adapter, trained on its confirmations and
directory records in its styles, and registered only if the gate passes.

``run_training`` is what the trainer does, wherever it runs: the Ray actor that the ingress starts
(``deployments.trainer``; never the ingress or a serving model replica), or a task in this process for
the CLI and the tests (``InProcessLauncher``). Everything it does is written to the run's row
(``run_store``), so a run is followed, and outlives the ingress that started it, through PostgreSQL.

The new weights go to a folder of their own (``<adapter>.run-<id>``) under the adapter root: the revision
serving now is untouched until the registry names the new folder (a new revision, which model replicas
load by ``name@revision`` without a redeploy). A rejected revision's folder is deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import uuid
from dataclasses import asdict
from typing import Protocol

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from serve_app.models.adapters import AdapterRegistry
from serve_app.models.paths import ModelPaths
from serve_app.training.examples import TENANT_STYLES
from serve_app.training.gate import CANDIDATE, CURRENT, counts_by_source, decide, measure
from serve_app.training.run import REPORT
from serve_app.training.run_store import TrainingRunStore
from serve_app.training.tenant_examples import tenant_material
from serve_app.training.trainer import Progress, TrainingConfig, train_adapter

log = logging.getLogger(__name__)
DEFAULT_STYLE = "statements"


class TrainingSetup(BaseModel):
    """Where and how runs train: the model node's device and resources (from the model's config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = "cpu"
    dtype: str = "float32"
    num_cpus: float = Field(default=1, ge=0)
    num_gpus: float = Field(default=0, ge=0)
    custom_resources: dict[str, float] = Field(default_factory=dict)
    directory_examples: int = Field(default=240, ge=0, description="Directory examples beside confirmations.")
    directory_cases: int = Field(default=24, ge=0, description="Held-out directory records the gate measures.")


class Launcher(Protocol):
    async def launch(self, run_id: uuid.UUID) -> None: ...


async def run_training(pool: asyncpg.Pool, paths: ModelPaths, run_id: uuid.UUID, setup: TrainingSetup) -> None:
    """Train, gate and register (or reject) the queued run ``run_id``; every outcome is written to its row,
    an error as ``failed``. Returns at once when the run is not queued (another trainer took it)."""
    store = TrainingRunStore(pool)
    run = await store.take(run_id)
    if run is None:
        return
    folder = f"{run.adapter}.run-{run.id[:8]}"
    output = paths.adapter_root / folder
    try:
        registry = AdapterRegistry(pool)
        current = await registry.get(run.adapter)
        style = _style_of(paths, current.path if current else None)
        material = await tenant_material(pool, run.tenant, style, setup.directory_examples, setup.directory_cases)
        if not material.training:
            raise ValueError("nothing to learn: no confirmations with a branch, and no directory records")
        loop = asyncio.get_running_loop()
        examples = len(material.training)

        def on_progress(progress: Progress) -> None:  # from the training thread
            eta = 0.0 if progress.eta_s != progress.eta_s else progress.eta_s  # NaN at step 0
            asyncio.run_coroutine_threadsafe(
                store.progress(run_id, progress.step, progress.loss, round(eta, 1), examples), loop
            ).result()

        config = TrainingConfig(steps=run.steps, device=setup.device, dtype=setup.dtype)
        trained = await asyncio.to_thread(train_adapter, paths.base, output, material.training, config, on_progress)
        candidates = {CANDIDATE: paths.validate(CANDIDATE, folder)}
        if current is not None:
            candidates[CURRENT] = paths.validate(CURRENT, current.path)
        measured = await measure(pool, paths.base, candidates, material.cases, setup.device)
        accepted, reasons = decide(measured)
        report = {
            "tenant": run.tenant, "style": style, "confirmations_learned": material.confirmations,
            "examples": examples, "cases": counts_by_source(material.cases), "measured": measured,
            "accepted": accepted, "reasons": reasons, "trained": asdict(trained) | {"losses": trained.losses[-10:]},
            "replaces": current.ref if current else None,
        }  # fmt: skip
        (output / REPORT).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        if not accepted:
            shutil.rmtree(output, ignore_errors=True)
            await store.finish(run_id, "rejected", report)
            return
        registered = await registry.upsert(paths.validate(run.adapter, folder), folder)
        await store.finish(run_id, "registered", report, revision=registered.revision)
    except Exception as exc:  # any failure ends the run, said on its row
        log.exception("training run %s failed", run_id)
        shutil.rmtree(output, ignore_errors=True)
        await store.finish(run_id, "failed", error=f"{type(exc).__name__}: {exc}"[:500])


def _style_of(paths: ModelPaths, current_folder: str | None) -> str:
    """The styles the adapter was trained in (its training report says, when it was trained here)."""
    if current_folder is not None:
        report = paths.adapter_root / current_folder / REPORT
        try:
            tenant = json.loads(report.read_text(encoding="utf-8")).get("tenant")
        except (OSError, ValueError):
            tenant = None
        if tenant in TENANT_STYLES:
            return tenant
    return DEFAULT_STYLE


class InProcessLauncher:
    """Runs trainings as tasks of this process's event loop (the CLI, tests). The service uses a Ray actor."""

    def __init__(self, pool: asyncpg.Pool, paths: ModelPaths, setup: TrainingSetup):
        self.pool, self.paths, self.setup = pool, paths, setup
        self.tasks: set[asyncio.Task] = set()

    async def launch(self, run_id: uuid.UUID) -> None:
        task = asyncio.get_running_loop().create_task(run_training(self.pool, self.paths, run_id, self.setup))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
