"""The Serve application builder: ``import_path: deployments.app:build_app`` in every config file.

``args`` are validated once into an ``AppConfig``; each deployment's options (resources, autoscaling,
queue bounds, user_config) are derived from it.
"""

from __future__ import annotations

from ray.serve import Application

from deployments.extractor import EntityExtractor
from deployments.ingress import Ingress
from deployments.job_worker import JobWorker
from deployments.model_server import ModelServer
from serve_app.config import AppConfig, ModelConfig
from serve_app.settings import Settings
from serve_app.training.revision import TrainingSetup


def build_app(args: dict) -> Application:
    config = AppConfig.model_validate(args)
    model_server = None
    paths = None
    training = None
    if config.model is not None:
        model = config.model
        paths = model.paths(Settings().models_dir)  # resolved once, here, for every deployment
        model_server = ModelServer.options(  # type: ignore[attr-defined]  # a Serve Deployment
            name="ModelServer", **model.resources.deployment_options(model.tunables)
        ).bind(model.model_dump(mode="json"), paths)
        training = training_setup(model).model_dump()
    extractor = EntityExtractor.options(  # type: ignore[attr-defined]  # a Serve Deployment
        name="EntityExtractor", **config.extractor.resources.deployment_options(config.extractor.tunables)
    ).bind(model_server)
    job_worker = None
    if config.jobs is not None:
        job_worker = JobWorker.options(  # type: ignore[attr-defined]  # a Serve Deployment
            name="JobWorker", **config.jobs.deployment_options()
        ).bind(extractor, config.jobs.retention.model_dump())
    ingress = config.ingress
    ingress_options = ingress.resources.ingress_options(ingress.tunables)
    return Ingress.options(name="Ingress", **ingress_options).bind(  # type: ignore[attr-defined]  # a Serve Deployment
        extractor, model_server, job_worker, ingress.model_dump(mode="json"), paths, training
    )


def training_setup(model: ModelConfig) -> TrainingSetup:
    """Training runs go where the model's replicas go, with what one replica takes (CPUs, GPUs, custom
    resources) and the model's device."""
    resources = model.resources
    return TrainingSetup(device=model.device, dtype="bfloat16" if model.device.startswith("cuda") else "float32",
                         num_cpus=resources.num_cpus, num_gpus=resources.num_gpus,
                         custom_resources=resources.custom_resources)  # fmt: skip
