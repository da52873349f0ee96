"""``serve-app reconcile`` (a statement file, answered in this process) and ``serve-app jobs work`` (a bulk-job
worker outside Serve, on the configured PostgreSQL and Redis)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections import Counter
from pathlib import Path

from serve_app.cli.query import query_pipeline
from serve_app.config import UploadLimits
from serve_app.jobs.files import InputTable, read_table
from serve_app.jobs.outputs import Lang, output_cells, output_header, workbook
from serve_app.jobs.results import RowResult, answer_rows, csv_text, result_filename
from serve_app.schemas import QueryRequest, QueryResult
from serve_app.settings import Settings

#: Rows answered at the same time by ``reconcile`` (the database round trips overlap).
RECONCILE_CONCURRENCY = 8
#: Rows between two progress-bar updates.
RECONCILE_BLOCK = 200
#: ``reconcile`` reads files of any length; this bounds only memory (the other limits are the service's).
RECONCILE_MAX_ROWS = 5_000_000
RECONCILE_LIMITS = UploadLimits(max_cells=RECONCILE_MAX_ROWS * 16, parse_timeout_s=600)


def output_path(source: Path, output: Path | None) -> Path:
    return output or source.with_name(result_filename(source.name, "csv"))


def write_output(path: Path, header: list[str], rows: list[list[str]], table: InputTable, lang: Lang) -> None:
    """CSV (UTF-8 with a BOM) or, for a ``.xlsx`` path, a workbook: the same columns either way (the
    service's files: ``jobs.outputs``)."""
    if path.suffix.lower() == ".xlsx":
        path.write_bytes(workbook(header, rows, table.column_kinds, lang, table.title_lines))
    else:
        path.write_text("\ufeff" + csv_text([header, *rows]), encoding="utf-8")


async def _reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    table = read_table(
        args.file.read_bytes(),
        format=args.format,
        encoding=args.encoding,
        column=args.column,
        max_rows=RECONCILE_MAX_ROWS,
        limits=RECONCILE_LIMITS,
    )
    skips = table.skips
    print(
        f"{args.file}: header on line {table.header_line}, {len(table.rows)} rows "
        f"({sum(r is not None for r in skips)} not transactions), looking up column "
        f"{table.columns[table.text_column]!r}",
        file=sys.stderr,
    )
    async with query_pipeline(settings, args.model) as pipeline:

        async def answer(request: QueryRequest) -> QueryResult:
            return await pipeline.run(request.model_copy(update={"model": args.model}))

        answered: dict[str, RowResult] = {}  # a text that repeats anywhere in the file is asked once
        texts = [table.text(row) for row in table.rows]
        asked = [text for text, reason in zip(texts, skips, strict=True) if reason is None]
        with tqdm(total=len(asked), unit="row", file=sys.stderr, disable=args.quiet) as progress:
            for start in range(0, len(asked), RECONCILE_BLOCK):
                block = asked[start : start + RECONCILE_BLOCK]
                new = [text for text in dict.fromkeys(block) if text not in answered]
                answered |= zip(new, await answer_rows(answer, new, RECONCILE_CONCURRENCY), strict=True)
                progress.update(len(block))
        done = [
            RowResult(verdict="skipped", reason=reason) if reason else answered[text]
            for text, reason in zip(texts, skips, strict=True)
        ]
    rows = [cells + output_cells(result) for cells, result in zip(table.rows, done, strict=True)]
    out = output_path(args.file, args.output)
    write_output(out, output_header(table.columns, args.lang), rows, table, args.lang)
    counts = Counter(result.verdict or "error" for result in done)
    summary = ", ".join(f"{name} {counts.get(name, 0)}" for name in ("match", "ambiguous", "none", "skipped", "error"))
    print(f"{len(rows)} rows → {out}\n{summary}")
    return 0


async def _work(settings: Settings, args: argparse.Namespace) -> int:
    """A worker until SIGTERM or SIGINT: rules-only (a job that names an adapter gets that error in its rows)."""
    from serve_app.config import IngressTunables, JobTunables
    from serve_app.db.pool import create_pool
    from serve_app.db.redis_client import create_redis
    from serve_app.jobs.runner import JobRunner
    from serve_app.jobs.store import JobStore
    from serve_app.service.assembly import assemble_query_service

    if settings.database_url is None:
        print("serve-app jobs work: set SERVE_APP_DATABASE_URL (the service's database)", file=sys.stderr)
        return 2
    pool = await create_pool(settings.database_url, settings)
    redis = create_redis(settings.redis_url, settings) if settings.redis_url else None
    try:
        service = await assemble_query_service(pool, redis, settings, IngressTunables())
        tunables = JobTunables(chunk_rows=args.chunk_rows, concurrency=args.concurrency)
        runner = JobRunner(JobStore(pool), service.answer, tunables, refresh=service.refresh_for_chunk)
        print(f"working bulk jobs: chunks of {tunables.chunk_rows} rows", file=sys.stderr, flush=True)
        # SIGTERM (an orchestrator) or SIGINT stop it between rows; a chunk in flight is rolled back, not lost.
        # Handlers of our own: a process started in the background inherits SIGINT ignored.
        stop = asyncio.Event()
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(stop_signal, stop.set)
        work = asyncio.create_task(runner.run_forever())
        await asyncio.wait([work, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            work.result()  # the loop only ends by a bug: raise it
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
    finally:
        await pool.close()
        if redis is not None:
            await redis.aclose()
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    reconcile = commands.add_parser(
        "reconcile",
        help="answer every row of a statement file (CSV, XLSX, JSON lines) in this process",
        description="Reads the file, looks up the bank column of each row with the service's pipeline, and "
        "writes every row, in order, with code, official_name, bank, city, verdict, confidence, reason, "
        "candidates and error. The bank column is detected (对方行名, 开户行, bank …) unless given.",
    )
    reconcile.add_argument("file", type=Path)
    reconcile.add_argument("--column", help="header or 1-based number of the bank column")
    reconcile.add_argument("-o", "--output", type=Path, help="output file (.csv or .xlsx); default FILE.result.csv")
    reconcile.add_argument("--model", help="extract with this registered adapter (loads the demo base locally)")
    reconcile.add_argument("--encoding", help="text encoding (default: UTF-16 with a BOM, UTF-8, else GB18030)")
    reconcile.add_argument("--lang", choices=("zh", "en"), default="zh", help="the answer columns' headers")
    reconcile.add_argument("--format", choices=("csv", "xlsx", "jsonl"), help="default: detected")
    reconcile.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    reconcile.set_defaults(run=_reconcile)

    jobs = commands.add_parser("jobs", help="bulk jobs").add_subparsers(dest="jobs_command", required=True)
    work = jobs.add_parser(
        "work",
        help="work bulk jobs from the service's database outside Serve (rules only) until interrupted",
    )
    work.add_argument("--chunk-rows", type=int, default=200)
    work.add_argument("--concurrency", type=int, default=16)
    work.set_defaults(run=_work)
