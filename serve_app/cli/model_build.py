"""A first run's background work (``serve-app up``): build the demo model, register its adapters, deploy the
configuration with its model replicas, and say on the console when they have joined. Its progress is
written where the warming ingress reads it (``ops.warming``): ``/readyz`` and the page show it."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

from serve_app.cli.demo import register_demo_model
from serve_app.cli.readiness import wait_for_readyz
from serve_app.cli.train import print_progress
from serve_app.models.demo import DEMO_ADAPTERS
from serve_app.ops.warming import clear_progress, write_progress
from serve_app.settings import Settings

#: How long the model replicas may take to join after ``serve deploy``.
JOIN_TIMEOUT_S = 900


_DASHBOARD = re.compile(r"View the dashboard at \S*?(https?://[0-9A-Za-z.:\[\]-]+)")


def dashboard_address(serve_log: str) -> str:
    """The dashboard of the Ray instance ``serve run`` started, as its log says (the last one started): the
    address ``serve deploy`` must talk to — not a default port another Ray on this machine may hold."""
    found = _DASHBOARD.findall(serve_log)
    if not found:
        raise RuntimeError("serve run's log names no Ray dashboard to deploy to")
    return found[-1]


def _client_env(env: dict) -> dict:
    """``env`` for ``serve deploy`` to the Ray instance ``serve run`` started with ``env``: a local Ray turns token
    authentication on unless ``RAY_AUTH_MODE`` says otherwise, and the dashboard client then needs the mode named
    to send the token (``~/.ray/auth_token``)."""
    return env if "RAY_AUTH_MODE" in env else env | {"RAY_AUTH_MODE": "token"}


class BuildStopped(Exception):
    """The service is stopping: the build gives up at its next training step."""


class ModelBuild:
    def __init__(self, settings: Settings, database_url: str, deploy: list[str], env: dict, log_path: Path,
                 log: IO[bytes], port: int, tiny: bool = False):  # fmt: skip
        """``deploy``: ``serve deploy CONFIG``; the dashboard's address is added from ``log_path``."""
        self.settings, self.database_url, self.deploy, self.env = settings, database_url, deploy, env
        self.log_path, self.log, self.port, self.tiny = log_path, log, port, tiny
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Give the build up at its next training step (Ctrl-C), so that the process exits in seconds and not
        when training would have ended. Nothing half-built counts as built: the next run builds it again."""
        self._stopping.set()

    def run(self) -> None:
        """Build, register, deploy, wait for the model replicas; any failure is said on the console (the rules
        keep answering)."""
        started = time.perf_counter()
        models_dir = self.settings.models_dir
        os.environ.setdefault("TQDM_DISABLE", "1")  # the base's conversion bar: the console keeps our lines
        try:
            write_progress(models_dir, {"phase": "base"})
            build = register_demo_model(self.settings, self.database_url, tiny=self.tiny, on_progress=self._trained)
            asyncio.run(build)
            write_progress(models_dir, {"phase": "deploying"})
            print(f"demo model built in {time.perf_counter() - started:.0f}s; deploying its replicas …", flush=True)
            address = dashboard_address(self.log_path.read_text(encoding="utf-8", errors="replace"))
            command = [*self.deploy[:2], "--address", address, *self.deploy[2:]]
            subprocess.run(command, env=_client_env(self.env), stdout=self.log, stderr=subprocess.STDOUT, check=True)
            wait_for_readyz(self.port, JOIN_TIMEOUT_S, lambda ready: ready.get("models") in ("ready", "busy"),
                            interval_s=2)  # fmt: skip
            print(f"model replicas ready {time.perf_counter() - started:.0f}s after the first answer: adapters "
                  f"{', '.join(DEMO_ADAPTERS)}", flush=True)  # fmt: skip
        except BuildStopped:
            print("the demo model's build stopped with the service; the next run starts it again", flush=True)
        except Exception as exc:  # noqa: BLE001 - said, not raised: the service goes on answering from the rules
            print(f"the demo model did not join ({type(exc).__name__}: {exc}); answers stay rules-only", flush=True)
        finally:
            clear_progress(models_dir)

    def _trained(self, adapter: str, progress) -> None:
        if self._stopping.is_set():
            raise BuildStopped  # from the training thread: ends the training loop, then the build
        print_progress(adapter, progress)
        eta = None if progress.eta_s != progress.eta_s else round(progress.eta_s)  # NaN before the first step
        state = {"phase": "training", "adapter": adapter, "step": progress.step, "steps": progress.steps,
                 "loss": progress.loss, "eta_s": eta}  # fmt: skip
        write_progress(self.settings.models_dir, state)
