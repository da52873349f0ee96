"""``serve-app up``: embedded services if no URL is set, migrations, demo data, then Ray Serve until stopped.

On a first run (the demo model not built yet) the rules answer at once: the application is deployed
without its model replicas (``ops.warming``), the demo model is built in the background with its progress
on the console, and the configuration as written is deployed when it is done. Ray's and Serve's own
output goes to ``$SERVE_APP_HOME/logs/serve.log``; the console keeps the service's lines.

Stopping: SIGTERM (systemd, Kubernetes, ``kill``) and SIGINT (Ctrl-C, ``kill -INT``) both stop ``serve run``
with SIGINT, so Serve drains its replicas (which flush their query logs) before the embedded servers stop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from serve_app.cli.database import prepare_database
from serve_app.cli.demo import register_demo_model
from serve_app.cli.model_build import ModelBuild
from serve_app.cli.readiness import wait_for_readyz
from serve_app.config import AppConfig
from serve_app.db.pool import connect_admin
from serve_app.directory.loader import load_demo_if_empty
from serve_app.ops.ingress_modes import INGRESS_MODES, ingress_environment
from serve_app.ops.warming import warming_config
from serve_app.service.tenants import is_loopback
from serve_app.settings import Settings, redact_url


def _wait_ready(port: int, process, timeout_s: float) -> float:
    """Seconds until /readyz answers 200; raises if the server exits or the timeout passes."""

    def check_alive() -> None:
        if process.poll() is not None:
            raise RuntimeError(f"serve run exited with code {process.returncode}")

    return wait_for_readyz(port, timeout_s, check_alive=check_alive)


def _first_query(port: int) -> tuple[float, dict]:
    body = json.dumps({"query": "华夏银行江油西山支行"}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/query", data=body, headers={"content-type": "application/json"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - a fixed loopback URL
        result = json.loads(response.read())
    return time.perf_counter() - started, result


def refuse_open_on_network(config: dict) -> None:
    """``ValueError`` for a Serve config that binds beyond loopback with ``auth: open`` (anyone on the network
    would be the one tenant, with every job) unless ``open_to_network`` says it is meant."""
    host = str(config.get("http_options", {}).get("host", "127.0.0.1"))
    for app in config.get("applications", []):
        ingress = AppConfig.model_validate(app.get("args") or {}).ingress
        if ingress.auth == "open" and not ingress.open_to_network and not is_loopback(host) and host != "localhost":
            raise ValueError(
                f"{app.get('name')}: auth: open on {host} would let anyone on the network list, download and delete "
                "every job: bind 127.0.0.1, use auth: keys, or set ingress.open_to_network: true"
            )


def _uses_demo_model(config: dict) -> bool:
    """Whether an application of ``config`` runs the demo model (a model with no ``model_path`` of its own)."""
    for app in config.get("applications", []):
        model = AppConfig.model_validate(app.get("args") or {}).model
        if model is not None and model.model_path is None:
            return True
    return False


def _up(settings: Settings, args: argparse.Namespace) -> int:
    """Blocking: start what is missing, deploy the Serve app from a config, serve until Ctrl-C."""
    import yaml

    from serve_app.models.demo import demo_model_built
    from serve_app.ops.embedded import services

    config = yaml.safe_load(args.config.read_text())
    port = int(config.get("http_options", {}).get("port", 8000))
    refuse_open_on_network(config)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # A shell starts background jobs with SIGINT ignored, and Python keeps an inherited "ignore": restore it,
    # so `kill -INT <pid>` stops the service too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with services(settings) as urls:
        os.environ["SERVE_APP_DATABASE_URL"] = urls.database_url  # the replicas inherit these
        os.environ["SERVE_APP_REDIS_URL"] = urls.redis_url
        os.environ["SERVE_APP_HOME"] = str(settings.home)
        settings = Settings()
        build_model = (not args.no_demo_model and _uses_demo_model(config)
                       and (args.tiny_model or not demo_model_built(settings.models_dir)))  # fmt: skip

        async def prepare() -> None:
            conn = await connect_admin(urls.database_url)
            try:
                await prepare_database(conn)
                report = await load_demo_if_empty(conn)
                if report:
                    print(f"loaded the demo directory: {report.branches_loaded} branches")
            finally:
                await conn.close()
            if not args.no_demo_model and not build_model:  # built: registered in a moment
                await register_demo_model(settings, urls.database_url)

        asyncio.run(prepare())
        print(
            f"PostgreSQL {redact_url(urls.database_url)}\nRedis      {redact_url(urls.redis_url)}\n"
            f"starting Ray Serve from {args.config} …"
        )
        serve_bin = Path(sys.executable).with_name("serve")
        env = ingress_environment(args.ingress, os.environ)
        first_config = args.config
        if build_model:  # the rules answer while the demo model is built
            first_config = settings.home / "serve-warming.yaml"
            first_config.parent.mkdir(parents=True, exist_ok=True)
            first_config.write_text(yaml.safe_dump(warming_config(config), allow_unicode=True), encoding="utf-8")
        log_path = settings.home / "logs" / "serve.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        print(f"Ray and Serve log to {log_path} (Ray's own logs: /tmp/ray/session_latest/logs)")
        log = log_path.open("ab")
        background: ModelBuild | None = None
        process = subprocess.Popen([str(serve_bin), "run", str(first_config)], env=env, start_new_session=True,
                                   stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            seconds = _wait_ready(port, process, args.ready_timeout)
            first, result = _first_query(port)
            top = result["matches"][0]["code"] if result["matches"] else "no match"
            print(f"ready in {seconds:.1f}s on http://127.0.0.1:{port} — first query {first * 1000:.0f} ms ({top})")
            if build_model:
                print("answering from the rules; the demo model is being built (requests naming an adapter: 503 "
                      "model_warming until its replicas join) …")  # fmt: skip
                deploy = [str(serve_bin), "deploy", str(args.config)]
                background = ModelBuild(settings, urls.database_url, deploy, env, log_path, log, port, args.tiny_model)
                threading.Thread(target=background.run, daemon=True).start()
            print("Ctrl-C stops the service and the embedded servers.")
            process.wait()
        except KeyboardInterrupt:
            print("\nstopping …")
        finally:
            if background is not None:
                background.stop()
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
            log.close()
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    up = commands.add_parser(
        "up",
        help="run the service: embedded PostgreSQL/Redis if no URL is set, migrations, demo data, Ray Serve",
    )
    up.add_argument("--config", type=Path, default=Path("configs/local.yaml"), help="Serve config file")
    up.add_argument("--no-demo-model", action="store_true", help="do not build/register the demo model")
    up.add_argument(
        "--tiny-model",
        action="store_true",
        help="build the tiny random model as the demo model (tests: seconds to build; answers noise)",
    )
    up.add_argument("--ready-timeout", type=float, default=300, help="seconds to wait for /readyz")
    up.add_argument(
        "--ingress",
        choices=sorted(INGRESS_MODES),
        default="proxy",
        help="how HTTP reaches the ingress: Serve's proxy actor, or HAProxy straight to the replicas",
    )
    up.set_defaults(run=_up, blocking=True)
