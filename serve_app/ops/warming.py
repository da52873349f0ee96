"""The first run's two phases: rules answers at once, model replicas when the demo model is built.

On a fresh machine the demo model (SmolLM2 converted, two adapters trained here) takes many minutes on a
CPU. ``serve-app up`` does not wait for it: it deploys ``warming_config(config)`` — the same application
without model replicas, its ingress told a model is coming (``ingress.model_warming``: requests naming an
adapter get 503 ``model_warming`` with Retry-After, everything else is answered by the rules) — builds the
model in the background, writing its progress where the ingress reads it (``write_progress``, shown by
``/readyz`` and the page), and then deploys the configuration as written: Serve adds the model replicas
and rolls the ingress and extractor over to them, answering throughout.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

#: Where the build's progress is, under the models folder (removed when the build ends).
PROGRESS_FILE = "build-progress.json"


def warming_config(config: dict) -> dict:
    """``config`` (a Serve config file's contents) with every application's model replicas left out and its
    ingress warming: no ``model``, no ``default_adapter`` fallback, no ModelServer deployment options."""
    warming = copy.deepcopy(config)
    for app in warming.get("applications", []):
        args = app.setdefault("args", {})
        args["model"] = None
        args.setdefault("ingress", {})["model_warming"] = True
        deployments = app.get("deployments", [])
        app["deployments"] = [d for d in deployments if d.get("name") != "ModelServer"]
        for deployment in app["deployments"]:
            if deployment.get("name") == "EntityExtractor" and deployment.get("user_config"):
                deployment["user_config"] = deployment["user_config"] | {"default_adapter": None}
        extractor_tunables = args.get("extractor", {}).get("tunables")
        if extractor_tunables:
            extractor_tunables["default_adapter"] = None
    return warming


def write_progress(models_dir: Path, progress: dict) -> None:
    """Replace the build's progress (atomically: a reader never sees half a file)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = models_dir / f".{PROGRESS_FILE}.{os.getpid()}"
    partial.write_text(json.dumps(progress, ensure_ascii=False), encoding="utf-8")
    partial.replace(models_dir / PROGRESS_FILE)


def read_progress(models_dir: Path) -> dict | None:
    """The build's last progress, or None (no build under way, or unreadable)."""
    try:
        value = json.loads((models_dir / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def clear_progress(models_dir: Path) -> None:
    (models_dir / PROGRESS_FILE).unlink(missing_ok=True)
