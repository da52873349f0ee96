"""Hostile uploads and requests against the ingress's HTTP app: each refused or answered in bounded time
and memory, while another tenant's queries go on being answered.

Each case runs in a fresh process holding the real HTTP app (Starlette, the handlers, the job store) over
one embedded PostgreSQL and Valkey, with ``auth: keys`` and the default limits. The process measures its
resting memory, starts a second tenant asking a query every 50 ms, sends the case, and reports the status,
the seconds it took, the peak memory above resting (RSS sampled every 5 ms) and how the other tenant fared.
Goal: every case refused or answered in ≤ 2 s with ≤ 64 MB above resting, the other tenant never failing.

    python benchmarks/hostile_inputs.py [--only NAME] [--json benchmarks/results/hostile_inputs.json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S, GOAL_MB = 2.0, 64.0


# --- the cases ------------------------------------------------------------------------------------------


def _xlsx(sheet_xml: str, shared_strings: bytes | None = None, sheets: int = 1) -> bytes:
    """A minimal XLSX written part by part (so that its parts can claim what a crafted file claims)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        sheet_entries = "".join(f'<sheet name="S{i}" sheetId="{i}" r:id="rId{i}"/>' for i in range(1, sheets + 1))
        rels = "".join(
            f'<Relationship Id="rId{i}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            f'worksheet" Target="worksheets/sheet{i}.xml"/>'
            for i in range(1, sheets + 1)
        )
        overrides = "".join(
            f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="application/vnd.openxmlformats-'
            f'officedocument.spreadsheetml.worksheet+xml"/>'
            for i in range(1, sheets + 1)
        )
        if shared_strings is not None:
            rels += ('<Relationship Id="rIdS" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
                     'relationships/sharedStrings" Target="sharedStrings.xml"/>')  # fmt: skip
            overrides += ('<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-'
                          'officedocument.spreadsheetml.sharedStrings+xml"/>')  # fmt: skip
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                   'package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxml'
                   'formats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
                   '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
                   f'officedocument.spreadsheetml.sheet.main+xml"/>{overrides}</Types>')  # fmt: skip
        z.writestr("_rels/.rels", '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/'
                   'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
                   'officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
                   '</Relationships>')  # fmt: skip
        z.writestr("xl/workbook.xml", '<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/'
                   'spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/'
                   f'relationships"><sheets>{sheet_entries}</sheets></workbook>')  # fmt: skip
        z.writestr("xl/_rels/workbook.xml.rels", '<?xml version="1.0"?><Relationships xmlns="http://schemas.'
                   f'openxmlformats.org/package/2006/relationships">{rels}</Relationships>')  # fmt: skip
        for i in range(1, sheets + 1):
            z.writestr(f"xl/worksheets/sheet{i}.xml", sheet_xml)
        if shared_strings is not None:
            z.writestr("xl/sharedStrings.xml", shared_strings)
    return out.getvalue()


_SHEET = (
    '<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">{}</worksheet>'
)
_HEADER_ROW = '<row r="1"><c r="A1" t="inlineStr"><is><t>对方行名</t></is></c></row>'


def _sheet(body: str, dimension: str | None = None, merges: str = "") -> str:
    claim = f'<dimension ref="{dimension}"/>' if dimension else ""
    return _SHEET.format(f"{claim}<sheetData>{_HEADER_ROW}{body}</sheetData>{merges}")


def _cell(ref: str, text: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>'


def cases() -> dict[str, Callable[[], tuple[str, bytes | Callable[[], AsyncIterator[bytes]]]]]:
    """name → (path with query string, body bytes or an async generator of chunks)."""
    last = _sheet(f'<row r="20001">{_cell("XFD20001", "华夏银行江油西山支行")}</row>', "A1:XFD20001")
    gap = _sheet(f'<row r="1048576">{_cell("A1048576", "华夏银行江油西山支行")}</row>')
    shared = b'<?xml version="1.0"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">' + (
        b"<si><t>a</t></si>" * 6_000_000) + b"</sst>"  # fmt: skip
    padded_sheet = _sheet(" " * 150_000_000)
    many_merges = _sheet(f'<row r="2">{_cell("A2", "华夏银行江油西山支行")}</row>', merges="<mergeCells>" + "".join(
        f'<mergeCell ref="B{n}:B{n + 1}"/>' for n in range(2, 40_000, 2)) + "</mergeCells>")  # fmt: skip
    wide = ",".join(f"c{i}" for i in range(3000)) + "\n" + "x," * 2999 + "x\n"
    keys = "".join(json.dumps({f"k{n}": "v", "对方行名": "华夏银行江油西山支行"}) + "\n" for n in range(1500))

    async def slow_body() -> AsyncIterator[bytes]:
        for byte in "对方行名\n华夏银行江油西山支行\n".encode():
            yield bytes([byte])
            await asyncio.sleep(1.0)

    legit = "对方行名,金额\n" + "".join(f"华夏银行江油西山支行,{n}.00\n" for n in range(20_000))
    return {
        "xlsx: dimension claims 20,001 × 16,384, one cell at the end": lambda: ("/api/v1/jobs", _xlsx(last)),
        "xlsx: one cell a million rows down": lambda: ("/api/v1/jobs", _xlsx(gap)),
        "xlsx: shared-strings bomb (6M strings)": lambda: ("/api/v1/jobs", _xlsx(_sheet(""), shared)),
        "xlsx: a sheet part of 150 MB of spaces": lambda: ("/api/v1/jobs", _xlsx(padded_sheet)),
        "xlsx: 500 sheets": lambda: ("/api/v1/jobs", _xlsx(_sheet(""), sheets=500)),
        "xlsx: 20,000 merged ranges": lambda: ("/api/v1/jobs", _xlsx(many_merges)),
        "csv: 3,000-column header": lambda: ("/api/v1/jobs", wide.encode()),
        "csv: one 8 MB line": lambda: ("/api/v1/jobs", b"bank\n" + b"x" * 8_000_000 + b"\n"),
        "csv: a quoted cell of 1 MB over lines": lambda: ("/api/v1/jobs", b'bank\n"' + b"x\n" * 500_000 + b'"\n'),
        "csv: NUL after the first 64 KiB": lambda: ("/api/v1/jobs", b"bank\n" + b"a\n" * 40_000 + b"b\x00c\n"),
        "jsonl: 1,500 lines of distinct keys": lambda: ("/api/v1/jobs", keys.encode()),
        "jsonl: nesting 50,000 deep": lambda: ("/api/v1/jobs", b'{"a":' + b"[" * 50_000 + b"\n"),
        "jsonl: U+2028 inside a value (one row)": lambda: (
            "/api/v1/jobs", json.dumps({"对方行名": "华夏银行\u2028江油西山支行"}, ensure_ascii=False).encode()),
        "utf-16 text": lambda: ("/api/v1/jobs", "对方行名\n华夏银行江油西山支行\n".encode("utf-16")),
        "body at 1 byte/s": lambda: ("/api/v1/jobs", slow_body),
        "a legitimate 20,000-row CSV": lambda: ("/api/v1/jobs", legit.encode()),
        "browse filter with a NUL": lambda: ("/api/v1/branches?q=%00", b""),
    }  # fmt: skip


# --- one case, in its own process -------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def run_case(name: str) -> dict:
    import httpx
    from pydantic import SecretStr

    from serve_app.api.app import build_http_app
    from serve_app.api.parts import Api
    from serve_app.config import IngressConfig, IngressTunables
    from serve_app.db.pool import create_pool
    from serve_app.db.redis_client import create_redis
    from serve_app.directory.browse import DirectoryBrowser
    from serve_app.jobs.store import JobStore
    from serve_app.models.adapters import AdapterRegistry
    from serve_app.models.board import ModelBoard
    from serve_app.service.admin import AdminService
    from serve_app.service.assembly import assemble_query_service
    from serve_app.service.tenants import KeyStore
    from serve_app.settings import Settings

    pool = await create_pool(os.environ["SERVE_APP_DATABASE_URL"])
    redis = create_redis(os.environ["SERVE_APP_REDIS_URL"])
    service = await assemble_query_service(pool, redis, Settings(), IngressTunables(rate_limit_per_s=1e4))
    prefix = f"hostile{uuid.uuid4().hex[:6]}"
    service.result_cache.prefix = service.rate_limiter.prefix = prefix
    keys = KeyStore(pool)
    attacker, _ = await keys.create("attacker", [], None)
    other, _ = await keys.create("other", [], None)
    admin = AdminService(AdapterRegistry(pool), ModelBoard(redis, prefix=prefix), None, None)
    api = Api(service, admin, dict, SecretStr("x" * 32), IngressConfig(auth="keys"), DirectoryBrowser(pool),
              JobStore(pool), keys)  # fmt: skip
    path, body = cases()[name]()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_http_app(api)), base_url="http://localhost",
                                 timeout=120) as client:  # fmt: skip
        await client.post("/api/v1/query", json={"query": "华夏银行江油西山支行"}, headers={"x-api-key": other})
        resting = _rss_mb()
        peak = [resting]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.005):
                peak[0] = max(peak[0], _rss_mb())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        other_ms: list[float] = []
        other_failed = 0
        done = asyncio.Event()

        async def other_tenant() -> None:
            nonlocal other_failed
            n = 0
            while not done.is_set():
                n += 1
                started = time.perf_counter()
                response = await client.post("/api/v1/query", json={"query": f"华夏银行江油西山支行{n % 7}"},
                                             headers={"x-api-key": other})  # fmt: skip
                other_ms.append((time.perf_counter() - started) * 1000)
                other_failed += response.status_code != 200
                await asyncio.sleep(0.05)

        background = asyncio.create_task(other_tenant())
        started = time.perf_counter()
        content = body() if callable(body) else body
        if path.startswith("/api/v1/jobs"):
            response = await client.post(path, content=content, headers={"x-api-key": attacker})
        else:
            response = await client.get(path, headers={"x-api-key": attacker})
        seconds = time.perf_counter() - started
        done.set()
        await background
        stop.set()
        sampler.join()
    await service.query_log.close()
    await pool.close()
    await redis.aclose()
    error = (
        response.json().get("error", {})
        if response.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    return {
        "case": name,
        "bytes": len(content) if isinstance(content, bytes) else None,
        "status": response.status_code,
        "code": error.get("code"),
        "message": (error.get("message") or "")[:160],
        "seconds": round(seconds, 3),
        "peak_mb_above_resting": round(peak[0] - resting, 1),
        "other_tenant": {"queries": len(other_ms), "failed": other_failed,
                         "p50_ms": round(statistics.median(other_ms), 1) if other_ms else None,
                         "max_ms": round(max(other_ms), 1) if other_ms else None},
    }  # fmt: skip


# --- the matrix -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="run the cases whose name contains this")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # the child process: one case, JSON on stdout
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "hostile_inputs.json")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(asyncio.run(run_case(args.case)), ensure_ascii=False))
        return
    from serve_app.ops.embedded import EmbeddedPostgres, EmbeddedRedis

    names = [n for n in cases() if not args.only or args.only in n]
    results = []
    with tempfile.TemporaryDirectory(prefix="serve-app-hostile-") as home:
        postgres, valkey = EmbeddedPostgres(Path(home) / "pg"), EmbeddedRedis(Path(home) / "valkey")
        database_url, redis_url = postgres.start(), valkey.start()
        try:
            asyncio.run(_prepare(database_url))
            env = os.environ | {"SERVE_APP_DATABASE_URL": database_url, "SERVE_APP_REDIS_URL": redis_url}
            for name in names:
                out = subprocess.run([sys.executable, __file__, "--case", name], env=env, capture_output=True,
                                     text=True, check=True)  # fmt: skip
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
                _print_row(results[-1])
        finally:
            valkey.stop()
            postgres.stop()
    within = [r for r in results if r["seconds"] <= GOAL_S and r["peak_mb_above_resting"] <= GOAL_MB]
    print(f"\n{len(within)} of {len(results)} cases within {GOAL_S:g} s and {GOAL_MB:g} MB; other tenant failures: "
          f"{sum(r['other_tenant']['failed'] for r in results)}")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"goal": {"seconds": GOAL_S, "mb": GOAL_MB}, "cases": results},
                                    ensure_ascii=False, indent=2))  # fmt: skip
    print(f"wrote {args.json}")


def _print_row(r: dict) -> None:
    other = r["other_tenant"]
    print(f"{r['case'][:58]:<58} {r['status']:>4} {r['code'] or ''!s:<16} {r['seconds']:>7.2f} s "
          f"{r['peak_mb_above_resting']:>7.1f} MB | other tenant: {other['queries']:>3} asked, {other['failed']} "
          f"failed, max {other['max_ms']} ms")  # fmt: skip


async def _prepare(database_url: str) -> None:
    from serve_app.db.migrate import apply_migrations
    from serve_app.db.pool import connect_admin
    from serve_app.directory.loader import load_directory
    from serve_app.directory.records import demo_cnaps_path

    conn = await connect_admin(database_url)
    try:
        await apply_migrations(conn)
        await load_directory(conn, demo_cnaps_path())
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
