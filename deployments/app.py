"""The Serve application builder: ``import_path: deployments.app:build_app`` in every config file.

``args`` are validated once into an ``AppConfig``; each deployment's options (resources, autoscaling,
queue bounds, user_config) are derived from it.
"""

from __future__ import annotations

from ray.serve import Application

from deployments.extractor import EntityExtractor
from deployments.ingress import Ingress
from deployments.model_server import model_server_deployment
from serve_app.config import AppConfig
from serve_app.settings import Settings


def build_app(args: dict) -> Application:
    config = AppConfig.model_validate(args)
    model_server = None
    model_paths: dict = {}
    if config.model is not None:
        model = config.model
        ModelServer = model_server_deployment(model.max_adapters_per_replica)
        model_server = ModelServer.options(
            name="ModelServer", **model.resources.deployment_options(model.tunables)
        ).bind(model.model_dump(mode="json"))
        models_dir = Settings().models_dir
        model_paths = {
            "model_path": model.model_path or models_dir / "demo-base",
            "adapter_root": model.adapter_root or models_dir / "adapters",
        }
    extractor = EntityExtractor.options(
        name="EntityExtractor", **config.extractor.resources.deployment_options(config.extractor.tunables)
    ).bind(model_server)
    return Ingress.options(name="Ingress", **config.ingress.resources.deployment_options(config.ingress.tunables)).bind(
        extractor, model_server, config.ingress.max_body_bytes, model_paths
    )
