"""A finished job's ``result.xlsx``: built once (by the worker that finishes the job, else on the first
download) and kept in its ``jobs`` row, so that downloads cost a read, not seconds of CPU in the ingress."""

from __future__ import annotations

import asyncio
import logging
import uuid

from serve_app.jobs.outputs import Lang, output_header, workbook
from serve_app.jobs.status import JobStatus
from serve_app.jobs.store import JobStore

log = logging.getLogger(__name__)


async def result_workbook(store: JobStore, tenant: str, job_id: str, lang: Lang = "zh") -> tuple[JobStatus, bytes]:
    """The job's status and its workbook (``UnknownJob``, ``JobNotDone`` as for its rows). The Chinese one is
    kept; another language is built each time."""
    status, pages = await store.result_pages(tenant, job_id)
    job = uuid.UUID(status.id)
    stored, kinds = await store.pool.fetchrow("SELECT result_xlsx, column_kinds FROM jobs WHERE id = $1", job)
    if stored is not None and lang == "zh":
        return status, stored
    rows = [row async for page in pages for row in page]
    kinds = list(kinds) or ["text"] * len(status.columns)  # jobs stored before columns had kinds
    header = output_header(status.columns, lang)
    data = await asyncio.to_thread(workbook, header, rows, kinds, lang, status.title_lines)
    if lang == "zh":
        await store.pool.execute("UPDATE jobs SET result_xlsx = $2 WHERE id = $1 AND result_xlsx IS NULL", job, data)
    return status, data


async def build_when_done(store: JobStore, job_id: uuid.UUID) -> None:
    """Build a job's workbook as it finishes (a failure is logged: the first download builds it then)."""
    try:
        tenant = await store.pool.fetchval("SELECT tenant FROM jobs WHERE id = $1", job_id)
        if tenant is not None:
            await result_workbook(store, tenant, str(job_id))
    except Exception as exc:  # noqa: BLE001 - an optimisation: the download path builds it too
        log.warning("result workbook of job %s not built now: %s", job_id, exc)
