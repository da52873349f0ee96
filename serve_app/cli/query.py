"""``serve-app query``: the service's pipeline in this process, without Ray."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from pydantic import ValidationError

from serve_app.cli.database import database_url, prepare_database
from serve_app.db.pool import connect_admin, create_pool
from serve_app.directory.loader import load_demo_if_empty
from serve_app.query.pipeline import QueryPipeline, build_pipeline
from serve_app.schemas import QueryRequest, QueryResult
from serve_app.settings import Settings


@contextlib.asynccontextmanager
async def query_pipeline(settings: Settings, adapter: str | None = None) -> AsyncIterator[QueryPipeline]:
    """The same pipeline the service runs, on the configured or embedded database (demo data if empty)."""
    async with database_url(settings) as url:
        conn = await connect_admin(url)
        try:
            await prepare_database(conn)
            await load_demo_if_empty(conn)
        finally:
            await conn.close()
        pool = await create_pool(url, settings)
        worker = None
        try:
            if adapter is not None:
                worker = await _local_worker(settings, pool, adapter)
            yield await build_pipeline(pool, None if worker is None else worker.read)
        finally:
            if worker is not None:
                await worker.engine.shutdown()
            await pool.close()


async def _local_worker(settings: Settings, pool, adapter: str):
    """A ``ModelWorker`` in this process over the registry's adapters: what a ModelServer replica runs, with
    the default model config (HFEngine and the demo model unless configured otherwise)."""
    from serve_app.config import ModelConfig
    from serve_app.models.adapters import AdapterRegistry
    from serve_app.models.engines import make_engine
    from serve_app.models.residency import AdapterResidency
    from serve_app.models.server import ModelWorker

    config = ModelConfig()
    paths = config.paths(settings.models_dir)
    registry = AdapterRegistry(pool)
    if await registry.get(adapter) is None:
        raise ValueError(f"no adapter named {adapter!r} is registered (serve-app make-demo-model registers job_22/23)")
    engine = make_engine(config, paths)
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
        retired = f"  RETIRED as of {match.retired_on}" if match.retired_on else ""
        print(
            f"  {rank}. {match.code}  {match.name}  ({match.province} {match.city})  "
            f"confidence {match.confidence:.3f}  [{agree}]{retired}"
        )
    for successor in result.successors:
        print(f"     possible successor: {successor.code}  {successor.name}")
    print(f"  directory as of {result.directory_as_of} (data version {result.data_version})")
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


def add_commands(commands: argparse._SubParsersAction) -> None:
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
