"""``serve-app``: the command line.

Where ``SERVE_APP_DATABASE_URL`` is unset, commands start the embedded PostgreSQL under
``SERVE_APP_HOME`` for their duration (a second run restarts it on the same data, in ~0.1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
from pydantic import ValidationError

from serve_app.db.migrate import apply_migrations
from serve_app.db.pool import check_trigram_locale, connect_admin, create_pool
from serve_app.directory.loader import directory_stats, load_demo_if_empty, load_directory
from serve_app.directory.records import demo_cnaps_path
from serve_app.embedded import EmbeddedPostgres
from serve_app.pipeline import QueryPipeline, build_pipeline
from serve_app.redis_client import create_redis
from serve_app.schemas import QueryRequest, QueryResult
from serve_app.settings import Settings, redact_url


@contextlib.asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """The configured database URL, or the embedded server's (started here and stopped on exit)."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    postgres = EmbeddedPostgres(settings.home / "postgres")
    url = await asyncio.to_thread(postgres.start)
    try:
        yield url
    finally:
        await asyncio.to_thread(postgres.stop)


@contextlib.asynccontextmanager
async def admin_connection(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """An admin connection to the configured database, or to the embedded one."""
    async with database_url(settings) as url:
        conn = await connect_admin(url)
        try:
            yield conn
        finally:
            await conn.close()


async def prepare_database(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations and check the locale; return the migrations applied now."""
    applied = await apply_migrations(conn)
    await check_trigram_locale(conn)
    return applied


async def _db_migrate(settings: Settings, args: argparse.Namespace) -> int:
    async with admin_connection(settings) as conn:
        applied = await prepare_database(conn)
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


async def _db_load(settings: Settings, args: argparse.Namespace) -> int:
    path = None if args.no_sample else (args.file or demo_cnaps_path())
    started = time.perf_counter()
    async with admin_connection(settings) as conn:
        await prepare_database(conn)
        report = await load_directory(conn, path, synthetic=args.synthetic)
    elapsed = time.perf_counter() - started
    print(
        f"loaded {report.branches_loaded} branches from {path or 'no file'} "
        f"({report.rows_read} rows, {report.duplicates} duplicate codes merged), "
        f"{report.synthetic_loaded} synthetic; data version {report.data_version}; {elapsed:.1f}s"
    )
    return 0


async def _db_stats(settings: Settings, args: argparse.Namespace) -> int:
    async with admin_connection(settings) as conn:
        await prepare_database(conn)
        stats = await directory_stats(conn)
    print(json.dumps(stats, ensure_ascii=False, indent=2))
    return 0


@contextlib.asynccontextmanager
async def query_pipeline(settings: Settings, model: str | None = None) -> AsyncIterator[QueryPipeline]:
    """The same pipeline the service runs, on the configured or embedded database (demo data if empty).

    The extraction cache is used only when ``SERVE_APP_REDIS_URL`` is set: a cache that dies with the
    command would only cost start-up time.
    """
    async with database_url(settings) as url:
        conn = await connect_admin(url)
        try:
            await prepare_database(conn)
            await load_demo_if_empty(conn)
        finally:
            await conn.close()
        pool = await create_pool(url, settings)
        redis = create_redis(settings.redis_url, settings) if settings.redis_url else None
        worker = None
        try:
            if model is not None:
                worker = await _local_worker(settings, pool, model)
            yield await build_pipeline(pool, redis, None if worker is None else worker.read)
        finally:
            if worker is not None:
                await worker.engine.shutdown()
            await pool.close()
            if redis is not None:
                await redis.aclose()


async def _local_worker(settings: Settings, pool, adapter: str):
    """A ``ModelWorker`` on an HFEngine in this process, over the registry's adapters: what a ModelServer
    replica runs, with the default model config (the demo model unless configured otherwise)."""
    from serve_app.config import ModelConfig
    from serve_app.models.adapters import AdapterRegistry
    from serve_app.models.hf_engine import HFEngine
    from serve_app.models.residency import AdapterResidency
    from serve_app.models.server import ModelWorker

    config = ModelConfig()
    paths = config.paths(settings.models_dir)
    registry = AdapterRegistry(pool)
    if await registry.get(adapter) is None:
        raise ValueError(f"no adapter named {adapter!r} is registered (serve-app make-demo-model registers job_22/23)")
    engine = HFEngine(paths.base, device=config.device, dtype=config.dtype)
    residency = AdapterResidency(engine, registry, paths, capacity=config.max_adapters_per_replica)
    worker = ModelWorker(engine, residency, config.tunables, config.engine)
    await engine.start()
    return worker


def _print_result(result: QueryResult, as_json: bool) -> None:
    if as_json:
        print(result.model_dump_json(), flush=True)
        return
    entities = ", ".join(f"{k}={v}" for k, v in result.entities.model_dump(exclude_none=True).items())
    print(f"{result.query}\n  normalized: {result.normalized}\n  entities:   {entities or '-'}")
    print(f"  verdict:    {result.verdict} ({result.reason})")
    for rank, match in enumerate(result.matches, 1):
        agree = " ".join(f"{part}={how}" for part, how in match.evidence.model_dump().items() if how != "unstated")
        print(
            f"  {rank}. {match.code}  {match.name}  ({match.province} {match.city})  "
            f"confidence {match.confidence:.3f}  [{agree}]"
        )
    print(f"  {result.timings_ms['total']:.1f} ms")


def _error_line(message: str, code: str = "invalid_query") -> str:
    return json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False)


async def _query(settings: Settings, args: argparse.Namespace) -> int:
    if (args.text is None) == (args.file is None):
        print("serve-app query: give either TEXT or --file F", file=sys.stderr)
        return 2
    lines = [args.text] if args.text is not None else args.file.read_text(encoding="utf-8").splitlines()
    failures = 0
    async with query_pipeline(settings, args.model) as pipeline:
        for line in lines:
            try:
                request = QueryRequest(query=line, top_k=args.top_k, model=args.model)
            except ValidationError as exc:
                failures += 1
                message = "; ".join(error["msg"] for error in exc.errors())
                print(_error_line(message) if args.json else f"{line[:60]!r}: invalid query: {message}")
                continue
            _print_result(await pipeline.run(request), args.json)
    return 1 if failures and args.text is not None else 0


async def register_demo_model(settings: Settings, url: str, force: bool = False):
    """Build the demo model if missing (or ``force``) and register its adapters; return the ``DemoModel``."""
    from serve_app.models.adapters import AdapterRegistry
    from serve_app.models.demo import make_demo_model
    from serve_app.models.paths import ModelPaths

    demo = await asyncio.to_thread(make_demo_model, settings.models_dir, force)
    paths = ModelPaths.resolve(settings.models_dir)
    pool = await create_pool(url, settings)
    try:
        registry = AdapterRegistry(pool)
        for name in demo.adapters:
            await registry.upsert(paths.validate(name, name), name)
    finally:
        await pool.close()
    return demo


async def _make_demo_model(settings: Settings, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    async with database_url(settings) as url:
        conn = await connect_admin(url)
        try:
            await prepare_database(conn)
        finally:
            await conn.close()
        demo = await register_demo_model(settings, url, args.force)
    print(
        f"demo base model: {demo.base}\nadapters: {', '.join(demo.adapters)} under {demo.adapter_root} "
        f"(registered); {time.perf_counter() - started:.1f}s"
    )
    return 0


def _wait_ready(port: int, process, timeout_s: float) -> float:
    """Seconds until /readyz answers 200; raises if the server exits or the timeout passes."""
    import urllib.error
    import urllib.request

    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"serve run exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"not ready after {timeout_s:.0f}s")


def _first_query(port: int) -> tuple[float, dict]:
    import urllib.request

    body = json.dumps({"query": "华夏银行江油西山支行"}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/query", data=body, headers={"content-type": "application/json"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - a fixed loopback URL
        result = json.loads(response.read())
    return time.perf_counter() - started, result


def _up(settings: Settings, args: argparse.Namespace) -> int:
    """Blocking: start what is missing, deploy the Serve app from a config, serve until Ctrl-C."""
    import os
    import signal
    import subprocess

    import yaml

    from serve_app.embedded import services

    config = yaml.safe_load(args.config.read_text())
    port = int(config.get("http_options", {}).get("port", 8000))
    # SIGTERM (systemd, Kubernetes, `kill`) stops as Ctrl-C does: Serve drains its replicas, which flush
    # their query logs, and then the embedded servers stop.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # A shell starts background jobs with SIGINT ignored, and Python keeps an inherited "ignore": restore it,
    # so `kill -INT <pid>` stops the service too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with services(settings) as urls:
        os.environ["SERVE_APP_DATABASE_URL"] = urls.database_url  # the replicas inherit these
        os.environ["SERVE_APP_REDIS_URL"] = urls.redis_url
        os.environ["SERVE_APP_HOME"] = str(settings.home)
        settings = Settings()

        async def prepare() -> None:
            conn = await connect_admin(urls.database_url)
            try:
                await prepare_database(conn)
                report = await load_demo_if_empty(conn)
                if report:
                    print(f"loaded the demo directory: {report.branches_loaded} branches")
            finally:
                await conn.close()
            if not args.no_demo_model:
                await register_demo_model(settings, urls.database_url)

        asyncio.run(prepare())
        print(
            f"PostgreSQL {redact_url(urls.database_url)}\nRedis      {redact_url(urls.redis_url)}\n"
            f"starting Ray Serve from {args.config} …"
        )
        serve_bin = Path(sys.executable).with_name("serve")
        process = subprocess.Popen([str(serve_bin), "run", str(args.config)], start_new_session=True)
        try:
            seconds = _wait_ready(port, process, args.ready_timeout)
            first, result = _first_query(port)
            top = result["matches"][0]["code"] if result["matches"] else "no match"
            print(f"ready in {seconds:.1f}s on http://127.0.0.1:{port} — first query {first * 1000:.0f} ms ({top})")
            print("Ctrl-C stops the service and the embedded servers.")
            process.wait()
        except KeyboardInterrupt:
            print("\nstopping …")
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serve-app", description="Bank-branch query service.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="database: migrations, directory loads, statistics")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("migrate", help="apply pending schema migrations").set_defaults(run=_db_migrate)
    load = db_commands.add_parser("load", help="load the gazetteer, banks and a CNAPS branch file")
    load.add_argument("--file", type=Path, help="CNAPS CSV (default: the shipped real sample)")
    load.add_argument("--no-sample", action="store_true", help="load no CNAPS file (gazetteer/synthetic only)")
    load.add_argument("--synthetic", type=int, default=0, metavar="N",
                      help="replace synthetic branches with N deterministic ones (scale tests)")  # fmt: skip
    load.set_defaults(run=_db_load)
    db_commands.add_parser("stats", help="print directory statistics as JSON").set_defaults(run=_db_stats)

    query = commands.add_parser(
        "query",
        help="answer queries with the service's pipeline, without Ray",
        description="Normalize, extract and retrieve, exactly as the service does. With --file, one "
        "result per input line (an error object for a line that is not a valid query).",
    )
    query.add_argument("text", nargs="?", help="the query text")
    query.add_argument("--file", type=Path, help="read one query per line from this file")
    query.add_argument("--json", action="store_true", help="one JSON object per result (the HTTP API's schema)")
    query.add_argument("--top-k", type=int, default=5, help="matches per query (1-50)")
    query.add_argument("--model", help="extract with this registered LoRA adapter (loads the demo base locally)")
    query.set_defaults(run=_query)

    up = commands.add_parser(
        "up",
        help="run the service: embedded PostgreSQL/Redis if no URL is set, migrations, demo data, Ray Serve",
    )
    up.add_argument("--config", type=Path, default=Path("configs/local.yaml"), help="Serve config file")
    up.add_argument("--no-demo-model", action="store_true", help="do not build/register the demo model")
    up.add_argument("--ready-timeout", type=float, default=300, help="seconds to wait for /readyz")
    up.set_defaults(run=_up, blocking=True)

    demo = commands.add_parser(
        "make-demo-model",
        help="build a tiny local base model and the job_22/job_23 LoRA adapters, and register them",
    )
    demo.add_argument("--force", action="store_true", help="rebuild even if present")
    demo.set_defaults(run=_make_demo_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if getattr(args, "synthetic", 0) < 0:
        print("serve-app: --synthetic must be >= 0", file=sys.stderr)
        return 2
    try:
        settings = Settings()
        if getattr(args, "blocking", False):
            return args.run(settings, args)
        return asyncio.run(args.run(settings, args))
    except (OSError, RuntimeError, ValueError, asyncpg.PostgresError) as exc:
        print(f"serve-app: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
