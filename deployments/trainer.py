"""The trainer of adapter revisions (shim): a detached Ray actor per training run, with the model node's
resources, that runs ``serve_app.training.revision.run_training`` and exits. Detached, so that a run
outlives the ingress replica that started it (its state is in PostgreSQL); never the ingress or a model
replica that is serving."""

from __future__ import annotations

import logging
import uuid

import ray

from serve_app.db.pool import create_pool
from serve_app.models.paths import ModelPaths
from serve_app.settings import Settings
from serve_app.training.revision import TrainingSetup, run_training

log = logging.getLogger(__name__)
NAMESPACE = "serve-app-training"


@ray.remote(max_restarts=0)
class AdapterTrainer:
    async def train(self, run_id: str, paths: ModelPaths, setup: dict) -> None:
        settings = Settings.for_replica()
        pool = await create_pool(settings.database_url, settings)
        try:
            await run_training(pool, paths, uuid.UUID(run_id), TrainingSetup.model_validate(setup))
        finally:
            await pool.close()
            ray.actor.exit_actor()


class RayLauncher:
    """Starts each run in an actor of its own (``adapter-training-<run>``), placed where the model's resources
    are; the actor writes the run's progress and outcome to PostgreSQL and exits when done."""

    def __init__(self, paths: ModelPaths, setup: TrainingSetup):
        self.paths, self.setup = paths, setup

    async def launch(self, run_id: uuid.UUID) -> None:
        setup = self.setup
        trainer = AdapterTrainer.options(  # type: ignore[attr-defined]  # a Ray actor class
            name=f"adapter-training-{run_id}",
            namespace=NAMESPACE,
            lifetime="detached",
            num_cpus=setup.num_cpus,
            num_gpus=setup.num_gpus,
            resources=setup.custom_resources or None,
        ).remote()
        trainer.train.remote(str(run_id), self.paths, setup.model_dump())
        log.info("training run %s started in actor adapter-training-%s", run_id, run_id)
