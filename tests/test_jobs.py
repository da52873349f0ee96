"""Bulk jobs without Ray: reading statement files, the job store on a real PostgreSQL, the worker loop over
the real query path (rules, Valkey cache, retrieval), and a worker process killed mid-job."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import asyncpg
import openpyxl
import pytest

from serve_app.config import IngressTunables, JobTunables
from serve_app.db.pool import create_pool
from serve_app.directory.records import demo_cnaps_path
from serve_app.errors import DependencyUnavailable, TooManyRows, UnknownJob, UnreadableFile
from serve_app.jobs.exports import cell_kind, column_kinds
from serve_app.jobs.files import read_table
from serve_app.jobs.outputs import OUTPUT_COLUMNS, output_cells, output_header, workbook
from serve_app.jobs.results import RowResult, answer_row, csv_text
from serve_app.jobs.runner import JobRunner
from serve_app.jobs.store import JobStore
from serve_app.schemas import QueryRequest, QueryResult
from serve_app.service.assembly import assemble_query_service
from serve_app.service.query_service import QueryService
from serve_app.settings import Settings
from tests.conftest import loaded_database

SEED = "华夏银行江油西山支行"
SEED_CODE = "304659715925"


# --- reading files --------------------------------------------------------------------------------------


def test_csv_in_utf8_with_a_bom_and_the_bank_column_found_by_name() -> None:
    data = "\ufeff日期,金额,对方行名\n2026-01-02,100.00,华夏银行江油西山支行\n2026-01-03,5,工行徐州经济开发区支行\n"
    table = read_table(data.encode("utf-8"), max_rows=10)
    assert table.format == "csv" and table.columns == ["日期", "金额", "对方行名"] and table.text_column == 2
    assert [table.text(row) for row in table.rows] == ["华夏银行江油西山支行", "工行徐州经济开发区支行"]


def test_gbk_is_detected_and_a_wrong_stated_encoding_is_named() -> None:
    data = "序号,开户行\n1,中国农业银行萧县支行营业部\n".encode("gbk")
    table = read_table(data, max_rows=10)
    assert table.text(table.rows[0]) == "中国农业银行萧县支行营业部"
    with pytest.raises(UnreadableFile, match="not valid utf-8"):
        read_table(data, encoding="utf-8", max_rows=10)
    with pytest.raises(UnreadableFile, match="unknown encoding"):
        read_table(data, encoding="klingon", max_rows=10)


def test_xlsx_and_json_lines() -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["户名", "Bank Name", "金额"])
    sheet.append(["张三", SEED, 100.0])
    sheet.append([None, None, None])  # a blank row inside the data is a row
    sheet.append(["李四", "建行人民路支行", 7.5])
    out = io.BytesIO()
    workbook.save(out)
    table = read_table(out.getvalue(), max_rows=10)
    assert table.format == "xlsx" and table.text_column == 1
    assert table.rows == [["张三", SEED, "100"], ["", "", ""], ["李四", "建行人民路支行", "7.5"]]

    lines = '{"id": 1, "query": "华夏银行成都分行"}\n\n{"id": 2, "query": "建行人民路支行", "note": "x"}\n'
    table = read_table(lines.encode(), max_rows=10)
    assert table.format == "jsonl" and table.columns == ["id", "query", "note"] and table.text_column == 1
    assert table.rows == [["1", "华夏银行成都分行", ""], ["2", "建行人民路支行", "x"]]


def test_cells_merged_over_rows_are_read_in_each_row_and_a_merged_title_stays_one_cell() -> None:
    """Exports merge a counterparty's bank (and the date) over the transactions that share it: every row
    of the range is a transaction to that bank, never a blank bank cell skipped. Blank rows above the title
    do not shift the ranges."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet["A3"] = "中国建设银行 账户交易明细"
    sheet.merge_cells("A3:D3")
    for row, values in enumerate([["交易日期", "对方户名", "对方开户行", "金额"],
                                  ["2025-11-03", "甲", SEED, 1.5], [None, "乙", None, 2.5], [None, "丙", None, 3.5],
                                  ["2025-11-04", "丁", "建行人民路支行", 4.5]], start=4):  # fmt: skip
        for column, value in enumerate(values, start=1):
            sheet.cell(row, column, value)
    sheet.merge_cells("A5:A7")
    sheet.merge_cells("C5:C7")
    out = io.BytesIO()
    workbook.save(out)
    table = read_table(out.getvalue(), max_rows=10)
    assert table.title_lines == [["中国建设银行 账户交易明细"]] and table.header_line == 2
    assert [row[:3] for row in table.rows] == [
        ["2025-11-03", "甲", SEED], ["2025-11-03", "乙", SEED], ["2025-11-03", "丙", SEED],
        ["2025-11-04", "丁", "建行人民路支行"],
    ]  # fmt: skip
    assert table.skips == [None] * 4


def test_column_by_name_or_number_and_what_a_missing_column_says() -> None:
    data = b"a,b,c\n1,2,3\n"
    assert read_table(data, column="2", max_rows=5).text_column == 1
    assert read_table(data, column=" C ", max_rows=5).text_column == 2
    with pytest.raises(UnreadableFile, match=r"no column named 'd' in the header \(line 1\); its columns are: a, b, c"):
        read_table(data, column="d", max_rows=5)
    with pytest.raises(UnreadableFile, match="column 4 does not exist"):
        read_table(data, column="4", max_rows=5)
    with pytest.raises(UnreadableFile, match=r"no column looks like a bank name.*--column in serve-app reconcile"):
        read_table(data, max_rows=5)


def test_files_that_are_not_tables_and_files_too_long() -> None:
    with pytest.raises(UnreadableFile, match=r"\.xls"):
        read_table(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), max_rows=5)
    with pytest.raises(UnreadableFile, match="binary"):
        read_table(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", max_rows=5)
    with pytest.raises(UnreadableFile, match="XLSX"):
        read_table(b"PK\x03\x04 not really a zip", max_rows=5)
    with pytest.raises(UnreadableFile, match="line 2 is not JSON"):
        read_table(b'{"query": "x"}\n{oops\n', max_rows=5)
    with pytest.raises(UnreadableFile, match="line 1 nests too deeply"):
        read_table(b'{"a":' + b"[" * 50_000 + b"\n", max_rows=5)
    with pytest.raises(UnreadableFile, match="empty"):
        read_table(b"", format="csv", max_rows=5)
    with pytest.raises(TooManyRows, match="at most 2 rows"):
        read_table("bank\n一\n二\n三\n".encode(), max_rows=2)


def test_ragged_rows_keep_every_cell_and_blank_lines_are_no_rows() -> None:
    table = read_table("bank,amount\n华夏银行成都分行\n\n建行人民路支行,1,extra\n".encode(), max_rows=5)
    assert table.columns == ["bank", "amount", "column_3"]
    assert table.rows == [["华夏银行成都分行", "", ""], ["建行人民路支行", "1", "extra"]]


def test_result_columns_and_writers() -> None:
    assert output_header(["bank", "code"], "en")[:5] == ["bank", "code", "result_code", "official_name", "result_bank"]
    header = output_header(["日期", "联行号", "金额"])  # Chinese by default, prefixed where the input has the name
    assert header[:6] == ["日期", "联行号", "金额", "结果_联行号", "行名", "银行"]
    ambiguous = RowResult(
        verdict="ambiguous",
        reason="several_fit",
        confidence=0.5,
        candidates="304659715925 华夏银行江油西山支行; 102100000021 工商银行新华支行 (retired as of 2026-12-01)",
    )
    cells = output_cells(ambiguous)
    named = dict(zip([c.key for c in OUTPUT_COLUMNS], cells, strict=True))
    assert (named["candidate_1_code"], named["candidate_1_name"]) == ("304659715925", "华夏银行江油西山支行")
    assert (
        named["candidate_2_name"] == "工商银行新华支行 (retired as of 2026-12-01)" and named["candidate_3_code"] == ""
    )
    rows = [["2025-11-01", "x", "1,234.50", *cells], ["2025-11-02 09:30", "y", "-12.00", *output_cells(RowResult())]]
    assert list(csv.reader(io.StringIO(csv_text([header, *rows])))) == [header, *rows]
    kinds = column_kinds([[cell_kind(cell) for cell in row[:3]] for row in rows], 3)
    assert kinds == ["date", "text", "number"]
    book = openpyxl.load_workbook(io.BytesIO(workbook(header, rows, kinds)))
    sheet = book["结果"]
    first = [cell.value for cell in sheet[2]]
    assert first[0] == datetime(2025, 11, 1) and first[2] == 1234.5 and first[1] == "x"  # types kept
    assert sheet["A3"].value == datetime(2025, 11, 2, 9, 30) and sheet["C3"].value == -12.0
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == "A1:W3"
    assert sheet["A2"].fill.fgColor.rgb.endswith("FDF0C9")  # coloured by verdict (ambiguous)
    summary = [[cell.value for cell in row if cell.value is not None] for row in book["汇总"].iter_rows()]
    assert ["ambiguous", 1] in summary and ["error", 1] in summary


async def test_a_row_the_service_refuses_carries_its_error() -> None:
    async def never(request: QueryRequest) -> QueryResult:
        raise AssertionError("not asked")

    assert (await answer_row(never, "")).error == "String should have at least 1 character"
    assert "at most 512" in ((await answer_row(never, "行" * 600)).error or "")


# --- the store and the worker on real PostgreSQL and Valkey ----------------------------------------------


@pytest.fixture(scope="module")
async def jobs_database_url(embedded_postgres) -> str:
    return await loaded_database(embedded_postgres, "jobs")


@pytest.fixture(scope="module")
async def jobs_pool(jobs_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(jobs_database_url)
    yield pool
    await pool.close()


@pytest.fixture
async def query_service(jobs_pool, redis_client) -> QueryService:
    """The real query path, rules only, with a Valkey cache of its own."""
    service = await assemble_query_service(jobs_pool, redis_client, Settings(), IngressTunables())
    service.result_cache.prefix = f"jobs{uuid.uuid4().hex[:6]}"
    return service


def statement(rows: int, names: list[str]) -> bytes:
    """A statement export: a running number, an amount, the counterparty bank (repeating, as they do)."""
    lines = ["流水号,金额,对方行名"]
    for number in range(rows):
        lines.append(f"{number},{number % 997}.00,{names[number % len(names)]}")
    return ("\n".join(lines) + "\n").encode()


def directory_names(count: int) -> list[str]:
    with open(demo_cnaps_path(), encoding="utf-8") as handle:
        names = [row["LName"] for row in csv.DictReader(handle)][:count]
    # A bad row, an absent bank, short forms.
    return [*names, "", "火星银行奥林匹斯山支行", "工行徐州经济开发区支行", SEED]


async def run_until_done(store: JobStore, runner: JobRunner, tenant: str, job_id: str, timeout_s: float = 240):
    deadline = time.monotonic() + timeout_s
    while (status := await store.status(tenant, job_id)).state != "done":
        assert time.monotonic() < deadline, status
        await runner.run_chunk()
    return status


@pytest.mark.slow
async def test_a_20000_row_job_finishes_with_every_row_in_order(jobs_pool, query_service) -> None:
    names = directory_names(1200)
    table = read_table(statement(20_000, names), max_rows=200_000)
    store = JobStore(jobs_pool)
    submitted = await store.submit("acme", "statement.csv", table, None)
    empty = sum(1 for n in range(20_000) if not names[n % len(names)])  # skipped at submission: no bank name
    assert (submitted.state, submitted.total_rows, submitted.done_rows) == ("queued", 20_000, empty)
    runner = JobRunner(store, query_service.answer, JobTunables(chunk_rows=500))
    status = await run_until_done(store, runner, "acme", submitted.id)
    counts = status.counts
    assert status.done_rows == 20_000 == sum(counts.model_dump().values())
    assert counts.skipped == empty and counts.error == 0  # the empty cells: kept in place, not asked
    assert counts.match > 15_000 and status.rows_per_s and status.progress == 1.0

    _, pages = await store.result_pages("acme", submitted.id)
    rows = [row async for page in pages for row in page]
    assert [row[0] for row in rows] == [str(n) for n in range(20_000)]  # every row, in input order
    assert all(row[2] == names[n % len(names)] for n, row in enumerate(rows))
    column = dict(zip(output_header(table.columns, "en"), zip(*rows, strict=True), strict=False))
    assert column["code"][names.index(SEED)] == SEED_CODE
    absent = names.index("火星银行奥林匹斯山支行")
    assert column["verdict"][absent] == "none" and column["code"][absent] == ""
    blank = names.index("")
    assert (column["verdict"][blank], column["reason"][blank]) == ("skipped", "no_bank_name")
    # Each row's answer is what the service answers for its text alone.
    for n in range(0, 20_000, 797):
        direct = RowResult.of(await query_service.answer(QueryRequest(query=names[n % len(names)], top_k=3)))
        if names[n % len(names)]:
            assert rows[n][3:] == output_cells(direct)


async def test_two_workers_share_a_job_and_a_failed_chunk_loses_nothing(jobs_pool, query_service) -> None:
    table = read_table(statement(3_000, directory_names(300)), max_rows=10_000)
    store = JobStore(jobs_pool)
    job = await store.submit("acme", "two.csv", table, None)
    failures = {"left": 3}

    async def flaky(request: QueryRequest, adapter: str | None, tenant: str | None = None) -> QueryResult:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise DependencyUnavailable("PostgreSQL is unavailable; retry shortly")
        return await query_service.answer(request, adapter, tenant=tenant)

    tunables = JobTunables(chunk_rows=100, poll_interval_s=0.05)
    refreshed = []

    async def refresh() -> int:  # the data version is read again before every chunk
        refreshed.append(await query_service.refresh_data_version())
        return refreshed[-1]

    async def paced(request: QueryRequest, adapter: str | None, tenant: str | None = None) -> QueryResult:
        # The healthy worker alone answers the job's repeated names in well under the flaky one's first
        # 0.5 s backoff (it did, once retrieval got faster): paced, the job outlasts the backoff, so both
        # workers take chunks.
        await asyncio.sleep(0.01)
        return await query_service.answer(request, adapter, tenant=tenant)

    runners = [JobRunner(store, flaky, tunables, refresh=refresh), JobRunner(store, paced, tunables)]
    tasks = [asyncio.create_task(runner.run_forever()) for runner in runners]
    try:
        deadline = time.monotonic() + 120
        while (status := await store.status("acme", job.id)).state != "done":
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.1)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert runners[0].stats.failed_chunks >= 1 and all(runner.stats.rows for runner in runners)
    assert len(refreshed) >= runners[0].stats.chunks + runners[0].stats.failed_chunks
    assert status.done_rows == 3_000 == sum(status.counts.model_dump().values())
    # No chunk was committed twice: each committed row counts once in done_rows (checked above); the runners
    # may also have served other tests' jobs in this database, so their own totals are not compared.
    async with jobs_pool.acquire() as conn:
        done = await conn.fetchval("SELECT count(*) FROM job_rows WHERE job_id = $1 AND done", uuid.UUID(job.id))
    assert done == 3_000


async def test_a_tenant_sees_only_its_own_jobs_and_results_wait_for_the_last_row(jobs_pool) -> None:
    store = JobStore(jobs_pool)
    table = read_table("bank\n华夏银行成都分行\n".encode(), max_rows=5)
    mine = await store.submit("tenant-a", "a.csv", table, None)
    with pytest.raises(UnknownJob):
        await store.status("tenant-b", mine.id)
    with pytest.raises(UnknownJob):
        await store.delete("tenant-b", mine.id)
    assert mine.id not in [job.id for job in await store.recent("tenant-b")]
    assert mine.id in [job.id for job in await store.recent("tenant-a")]
    from serve_app.errors import JobNotDone

    with pytest.raises(JobNotDone):
        await store.result_pages("tenant-a", mine.id)
    with pytest.raises(UnknownJob):
        await store.status("tenant-a", "not-a-uuid")
    await store.delete("tenant-a", mine.id)
    empty = await store.submit("tenant-a", "empty.csv", read_table(b"bank\n", max_rows=5), None)
    assert empty.state == "done" and empty.progress == 1.0


@pytest.mark.slow
async def test_a_worker_killed_mid_job_loses_and_duplicates_nothing(jobs_database_url, jobs_pool, tmp_path) -> None:
    """A real worker process (``serve-app jobs work``) is SIGKILLed between commits; a second one finishes."""
    table = read_table(statement(6_000, directory_names(3_000)), max_rows=10_000)
    store = JobStore(jobs_pool)
    job = await store.submit("acme", "kill.csv", table, None)
    env = os.environ | {"SERVE_APP_DATABASE_URL": jobs_database_url, "SERVE_APP_HOME": str(tmp_path)}
    env.pop("SERVE_APP_REDIS_URL", None)
    command = [str(Path(sys.executable).with_name("serve-app")), "jobs", "work", "--chunk-rows", "100"]

    def start() -> subprocess.Popen:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    first = start()
    try:
        deadline = time.monotonic() + 120
        while (status := await store.status("acme", job.id)).done_rows < 1_000:
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)  # mid-chunk: it is always holding one while rows remain
        first.wait(timeout=10)
    finally:
        first.kill()
    at_kill = (await store.status("acme", job.id)).done_rows
    assert 1_000 <= at_kill < 6_000
    second = start()
    try:
        deadline = time.monotonic() + 180
        while (status := await store.status("acme", job.id)).state != "done":
            assert second.poll() is None, second.stderr.read() if second.stderr else ""
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.1)
    finally:
        second.send_signal(signal.SIGTERM)  # how an orchestrator stops it
        assert second.wait(timeout=30) == 0
    assert status.done_rows == 6_000 == sum(status.counts.model_dump().values())  # counted once each
    _, pages = await store.result_pages("acme", job.id)
    rows = [row async for page in pages for row in page]
    assert [row[0] for row in rows] == [str(n) for n in range(6_000)]
    verdict = 3 + [c.key for c in OUTPUT_COLUMNS].index("verdict")
    assert sum(1 for row in rows if row[verdict] or row[-1]) == 6_000


def test_reconcile_cli_writes_every_row_with_its_answer(jobs_database_url, tmp_path) -> None:
    source = tmp_path / "对账单.csv"
    source.write_bytes(
        "日期,对方开户行,金额\n1,华夏银行江油西山支行,10\n2,,3\n3,火星银行奥林匹斯山支行,5\n".encode("gbk")
    )
    env = os.environ | {"SERVE_APP_DATABASE_URL": jobs_database_url, "SERVE_APP_HOME": str(tmp_path)}
    serve_app = str(Path(sys.executable).with_name("serve-app"))
    for output in (tmp_path / "out.csv", tmp_path / "out.xlsx"):
        done = subprocess.run(
            [serve_app, "reconcile", str(source), "-o", str(output), "-q"], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "3 rows" in done.stdout and "match 1, ambiguous 0, none 1, skipped 1, error 0" in done.stdout
        if output.suffix == ".csv":
            rows = list(csv.reader(io.StringIO(output.read_text(encoding="utf-8-sig"))))
        else:
            sheet = openpyxl.load_workbook(output).active
            rows = [[cell or "" for cell in row] for row in sheet.iter_rows(values_only=True)]
        assert rows[0] == output_header(["日期", "对方开户行", "金额"])
        assert [row[0] for row in rows[1:]] == ["1", "2", "3"] and rows[1][3] == SEED_CODE
        verdict, reason = rows[0].index("结论"), rows[0].index("原因")
        assert (rows[2][verdict], rows[2][reason]) == ("skipped", "no_bank_name")  # kept in place, not asked
        assert rows[3][verdict] == "none"
    missing = subprocess.run(
        [serve_app, "reconcile", str(source), "--column", "收款行"], env=env, capture_output=True, text=True
    )
    assert missing.returncode == 1 and "no column named '收款行'" in missing.stderr
