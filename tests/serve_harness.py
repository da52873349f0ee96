"""Running the real Serve application in tests: database set-up, Ray + Serve start, config deploys, polling,
and a bounded load generator that records every response.

Nothing here fakes a part of the service; it only drives it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from serve_app.db.migrate import apply_migrations
from serve_app.db.pool import connect_admin, create_pool
from serve_app.db.redis_client import create_redis
from serve_app.directory.loader import load_directory
from serve_app.directory.records import demo_cnaps_path
from serve_app.models.adapters import AdapterRegistry, validate_adapter
from serve_app.models.tiny import build_adapter, make_tiny_model
from serve_app.ops.embedded import EmbeddedRedis, free_port
from serve_app.service.result_cache import KEY_SCHEMA

SEED_CODE = "304659715925"
#: Real branch names from the sample directory: the "hot" set of the load generator.
HOT_QUERIES = [
    "华夏银行江油西山支行",
    "中国农业银行萧县支行营业部",
    "工行徐州经济开发区支行",
    "建行人民路支行",
    "华夏银行成都分行",
]


async def prepare_app_database(database_url: str, home: Path) -> None:
    """Migrate and load the sample directory; build the demo model with job_22/23/24 and register them."""
    conn = await connect_admin(database_url)
    try:
        await apply_migrations(conn)
        await load_directory(conn, demo_cnaps_path())
    finally:
        await conn.close()
    demo = make_tiny_model(home / "models")
    build_adapter(demo.base, home / "models" / "adapters" / "job_24", seed=24)
    pool = await create_pool(database_url)
    try:
        registry = AdapterRegistry(pool)
        for name in ("job_22", "job_23", "job_24"):
            await registry.register(validate_adapter(name, name, home / "models" / "adapters", demo.base), name)
    finally:
        await pool.close()


#: The environment before each ``start_ray_serve``, restored by its ``stop_ray_serve``.
_ENVIRONMENTS: list[dict[str, str]] = []


def start_ray_serve(env: dict[str, str], port: int, metrics_port: int | None = None) -> None:
    """Start an in-process Ray (workers inherit ``env``) and Serve's proxy on ``port``; Ray's Prometheus
    endpoint on ``metrics_port`` if given. ``stop_ray_serve`` puts the environment back as it was, so
    no later test reads this application's settings."""
    import ray
    from ray import serve

    _ENVIRONMENTS.append(dict(os.environ))
    os.environ.update(env | {"RAY_AUTH_MODE": "disabled"})  # before ray.init: worker processes inherit it
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, _metrics_export_port=metrics_port)
    serve.start(http_options={"host": "127.0.0.1", "port": port})


def stop_ray_serve() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
        ray.shutdown()
    finally:
        if _ENVIRONMENTS:
            os.environ.clear()
            os.environ.update(_ENVIRONMENTS.pop())


def deploy(args: dict, deployments: list[dict], name: str = "test") -> None:
    """Deploy from a config, as `serve deploy` / `serve run CONFIG` do: the path that updates in place."""
    from ray.serve._private import api as serve_private
    from ray.serve.schema import ServeDeploySchema

    config = {
        "applications": [
            {
                "name": name,
                "route_prefix": "/",
                "import_path": "deployments.app:build_app",
                "args": args,
                "deployments": deployments,
            }
        ]
    }
    client = serve_private.serve_start()
    client.deploy_apps(ServeDeploySchema.model_validate(config), _blocking=True)


def serve_details() -> dict:
    from ray.serve._private import api as serve_private

    return serve_private.serve_start().get_serve_details()


@contextmanager
def running_valkey(folder: Path) -> Iterator[EmbeddedRedis]:
    """A real Valkey on a free loopback port for the block (a module's own, so it can be stopped and restarted)."""
    server = EmbeddedRedis(folder, port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def result_cache_entries(redis_url: str) -> int:
    """How many result-cache entries of the current key layout the shared tier holds."""

    async def count() -> int:
        client = create_redis(redis_url)
        try:
            return len([key async for key in client.scan_iter(match=f"sa:result{KEY_SCHEMA}:*", count=1000)])
        finally:
            await client.aclose()

    return asyncio.run(count())


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@contextmanager
def headless_chromium(downloads: Path | None = None) -> Iterator:
    """Debian's Chromium, headless, driven by Selenium (a ``webdriver.Chrome``); downloads go to ``downloads``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    if downloads is not None:
        options.add_experimental_option(
            "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
        )
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition: Callable, timeout_s: float = 60, interval_s: float = 0.25):
    """Poll ``condition`` until it returns something truthy (returned) or the timeout passes (error)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s")


def fetch_value(database_url: str, statement: str):
    """Run one statement on a fresh connection and return its first value (for tests outside an event loop)."""

    async def run():
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchval(statement)
        finally:
            await conn.close()

    return asyncio.run(run())


def post_query(base: str, query: str, **extra) -> httpx.Response:
    return httpx.post(f"{base}/api/v1/query", json={"query": query, **extra}, timeout=60)


@dataclass(frozen=True)
class Outcome:
    """One request of the load generator. ``status`` 0: no HTTP answer (transport error or client timeout)."""

    kind: str
    started: float  # time.monotonic()
    finished: float
    status: int
    code: str | None  # the error code of a JSON error body
    source: str | None  # the ``source`` of a 200 answer
    message: str | None = None  # the error message of a JSON error body (or the transport error)

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class Load:
    """Concurrent request loops against a running app, in a thread of their own, until stopped.

    ``mix`` maps a request kind to its number of concurrent workers:

    - ``hot``: real branch names, answered from the result cache after their first time;
    - ``cold``: a real name plus a unique suffix, so every one is extracted and retrieved;
    - ``model``: a cold query extracted by an adapter (job_22 / job_23 alternately);
    - ``adapter:NAME``: a cold query for adapter NAME.

    The generator stops by itself after ``max_s`` seconds, so a failing test cannot leave it running.
    """

    base: str
    mix: dict[str, int]
    timeout_s: float = 60.0
    max_s: float = 300.0
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.started = 0.0  # time.monotonic() when the load began
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._counter = itertools.count()

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 10)

    def since(self, moment: float, kind: str | None = None) -> list[Outcome]:
        return [o for o in list(self.outcomes) if o.started >= moment and (kind is None or o.kind == kind)]

    def sent_since(self, moment: float, count: int, timeout_s: float = 60) -> float:
        """Wait until ``count`` requests started at or after ``moment`` have finished (whatever their
        answer); return the time then. Paces a test by the traffic it has seen, not by the clock."""
        return wait_for(lambda: len(self.since(moment)) >= count and time.monotonic(), timeout_s, interval_s=0.05)

    def in_flight_at(self, moment: float, kind: str | None = None) -> int:
        return sum(
            1 for o in list(self.outcomes) if o.started < moment < o.finished and (kind is None or o.kind == kind)
        )

    def _body(self, kind: str) -> dict:
        n = next(self._counter)
        name = HOT_QUERIES[n % len(HOT_QUERIES)]
        if kind == "hot":
            return {"query": name}
        cold = f"{name}{uuid.uuid4().hex[:6]}"
        if kind == "cold":
            return {"query": cold}
        if kind == "model":
            return {"query": cold, "model": ("job_22", "job_23")[n % 2]}
        return {"query": cold, "model": kind.removeprefix("adapter:")}

    async def _run(self) -> None:
        deadline = time.monotonic() + self.max_s
        limits = httpx.Limits(max_connections=sum(self.mix.values()) + 4)
        async with httpx.AsyncClient(base_url=self.base, timeout=self.timeout_s, limits=limits) as client:

            async def worker(kind: str) -> None:
                while not self._stop.is_set() and time.monotonic() < deadline:
                    started = time.monotonic()
                    code = source = message = None
                    try:
                        response = await client.post("/api/v1/query", json=self._body(kind))
                        status, payload = response.status_code, _json_or_none(response)
                    except httpx.HTTPError as exc:
                        status, payload, message = 0, None, repr(exc)
                    if isinstance(payload, dict):
                        error = payload.get("error") or {}
                        code, message, source = error.get("code"), error.get("message"), payload.get("source")
                    self.outcomes.append(Outcome(kind, started, time.monotonic(), status, code, source, message))
                    if status != 200:
                        await asyncio.sleep(0.05)  # a client that backs off a little, as Retry-After asks

            await asyncio.gather(*(worker(kind) for kind, count in self.mix.items() for _ in range(count)))


def _json_or_none(response: httpx.Response):
    try:
        return response.json()
    except ValueError:
        return None


def scrape(url: str) -> dict[str, set[str]]:
    """A Prometheus endpoint's samples: name → the label keys seen on it."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples
