"""Statement exports as banks make them (``tests/export_shapes.py``: eight shapes), through the upload API
on a real PostgreSQL and Valkey and through ``serve-app reconcile``: the header found below title lines,
every transaction row answered, every other row ``skipped`` in its place, nothing lost, and the result
workbook keeping dates as dates and amounts as numbers."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import openpyxl
import pytest
from pydantic import SecretStr

from serve_app.api.app import build_http_app
from serve_app.api.parts import Api
from serve_app.config import IngressConfig, IngressTunables, JobTunables
from serve_app.db.pool import create_pool
from serve_app.directory.browse import DirectoryBrowser
from serve_app.jobs.runner import JobRunner
from serve_app.jobs.store import JobStore
from serve_app.service.assembly import assemble_query_service
from serve_app.settings import Settings
from tests.conftest import loaded_database
from tests.export_shapes import SEED, Shape, shapes

SHAPES = shapes()
ANSWERED = {"match", "ambiguous", "none"}


@pytest.fixture(scope="module")
async def exports_database_url(embedded_postgres) -> str:
    return await loaded_database(embedded_postgres, "exports")


@pytest.fixture
async def client(exports_database_url, redis_client) -> AsyncIterator[tuple[httpx.AsyncClient, JobRunner]]:
    pool = await create_pool(exports_database_url)
    service = await assemble_query_service(pool, redis_client, Settings(), IngressTunables(rate_limit_per_s=1e4))
    service.result_cache.prefix = service.rate_limiter.prefix = f"exports{uuid.uuid4().hex[:6]}"
    api = Api(service, None, dict, SecretStr("x" * 32), IngressConfig(), DirectoryBrowser(pool), JobStore(pool))  # type: ignore[arg-type]
    runner = JobRunner(api.jobs, service.answer, JobTunables(chunk_rows=50))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=build_http_app(api))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=60) as http:
        yield http, runner
    await service.query_log.close()
    await pool.close()


def check_rows(shape: Shape, header: list[str], rows: list[list[str]]) -> None:
    verdict, reason = header.index("verdict"), header.index("reason")
    assert len(rows) == shape.transactions + shape.not_transactions, shape.name  # nothing lost
    verdicts = [row[verdict] for row in rows]
    assert sum(v in ANSWERED for v in verdicts) == shape.transactions, (shape.name, verdicts)
    assert verdicts.count("skipped") == shape.not_transactions, (shape.name, verdicts)
    assert {row[reason] for row in rows if row[verdict] == "skipped"} <= {"no_bank_name", "total_line", "footer"}
    seed_rows = [row for row in rows if SEED in row]
    assert seed_rows and all(row[header.index("code")] == "304659715925" for row in seed_rows), shape.name


@pytest.mark.parametrize("shape", SHAPES, ids=[s.filename for s in SHAPES])
async def test_an_export_through_the_upload_api(client, shape: Shape) -> None:
    http, runner = client
    created = await http.post(f"/api/v1/jobs?filename={shape.filename}", content=shape.data)
    assert created.status_code == 201, (shape.name, created.text)
    job = created.json()
    deadline = time.monotonic() + 60
    while (status := (await http.get(f"/api/v1/jobs/{job['id']}")).json())["state"] != "done":
        assert time.monotonic() < deadline
        await runner.run_chunk()
    assert status["counts"]["skipped"] == shape.not_transactions and status["counts"]["error"] == 0
    result = (await http.get(f"/api/v1/jobs/{job['id']}/result.csv?lang=en")).content.decode("utf-8-sig")
    [header, *rows] = list(csv.reader(io.StringIO(result)))
    check_rows(shape, header, rows)
    assert status["header_line"] == 1 + len(status["title_lines"])
    if shape.filename.endswith((".xlsx", ".csv", ".txt")) and "交易日期" in header:
        book = openpyxl.load_workbook(io.BytesIO((await http.get(f"/api/v1/jobs/{job['id']}/result.xlsx")).content))
        sheet = book["结果"]
        first = [cell.value for cell in sheet[2]]
        assert isinstance(first[0], datetime), (shape.name, first[:8])  # a date stays a date
        assert isinstance(first[7], float | int), (shape.name, first[:8])  # an amount stays a number
        assert sheet.freeze_panes == "A2" and "汇总" in book.sheetnames
        summary = [[cell.value for cell in row] for row in book["汇总"].iter_rows()]
        titles = status["title_lines"]  # the export's title lines, kept on the summary sheet
        assert [row[0] for row in summary[: len(titles)]] == [line[0] for line in titles], shape.name


def test_the_same_exports_through_the_cli(exports_database_url, tmp_path: Path) -> None:
    env = os.environ | {"SERVE_APP_DATABASE_URL": exports_database_url, "SERVE_APP_HOME": str(tmp_path)}
    serve_app = str(Path(sys.executable).with_name("serve-app"))
    for shape in SHAPES:
        source = tmp_path / shape.filename
        source.write_bytes(shape.data)
        out = tmp_path / f"{shape.filename}.result.csv"
        done = subprocess.run([serve_app, "reconcile", str(source), "-o", str(out), "-q", "--lang", "en"], env=env,
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, (shape.name, done.stderr)
        [header, *rows] = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
        check_rows(shape, header, rows)
    untitled = tmp_path / "no_bank.csv"
    untitled.write_text("日期,金额\n1,2\n", encoding="utf-8")
    refused = subprocess.run([serve_app, "reconcile", str(untitled)], env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "--column in serve-app reconcile" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr  # one line
