"""Submitting a bulk job: the uploaded file read into a table, the adapter checked, the rows stored.

The HTTP layer bounds the upload's size, authenticates the caller, checks that it may use the adapter
and charges its rate limit (by the rows read); what is left is reading the file and storing the job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from serve_app.config import UploadLimits
from serve_app.db.errors import JOB_STORE, database_errors
from serve_app.jobs.files import InputTable, read_table
from serve_app.jobs.store import JobQuota, JobStatus, JobStore
from serve_app.schemas import JobParams


class JobSubmission:
    def __init__(
        self,
        store: JobStore,
        resolve_adapter: Callable[[str], Awaitable[str]],
        max_rows: int,
        limits: UploadLimits | None = None,
        quota: JobQuota | None = None,
    ):
        """``resolve_adapter``: a registered adapter's ref, ``UnknownAdapter`` for any other name."""
        self.jobs = store
        self.resolve_adapter = resolve_adapter
        self.max_rows = max_rows
        self.limits = limits or UploadLimits()
        self.quota = quota

    async def replayed(self, tenant: str, idempotency_key: str) -> JobStatus | None:
        """The tenant's job stored under this idempotency key, if any (a client's retry)."""
        with database_errors(JOB_STORE):
            return await self.jobs.replayed(tenant, idempotency_key)

    async def read(self, params: JobParams, data: bytes, content_type: str | None) -> InputTable:
        """The file ``data`` as a table, read within ``limits`` (in a thread): ``UnreadableFile`` (422) for
        a file that cannot be read as a table with a bank column or passes a limit, ``TooManyRows`` (413)."""
        return await asyncio.to_thread(
            read_table,
            data,
            format=params.format,
            content_type=content_type,
            encoding=params.encoding,
            column=params.column,
            max_rows=self.max_rows,
            limits=self.limits,
        )

    async def store(
        self, tenant: str, params: JobParams, table: InputTable, idempotency_key: str | None = None
    ) -> JobStatus:
        """The new job of ``tenant`` over ``table``: ``UnknownAdapter`` (404) for an adapter not registered,
        ``QuotaExceeded`` (429) past the tenant's ``quota``; the job of ``idempotency_key`` if it exists."""
        # An unknown adapter is refused now, not row by row; a known one is pinned to its current revision,
        # so that re-registering it mid-job cannot mix two revisions' answers in one file.
        adapter = None if params.model is None else await self.resolve_adapter(params.model)
        filename = params.filename or f"upload.{table.format}"
        with database_errors(JOB_STORE):
            return await self.jobs.submit(tenant, filename, table, adapter, self.quota, idempotency_key)
