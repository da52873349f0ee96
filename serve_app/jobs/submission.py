"""Submitting a bulk job: the uploaded file read into a table, the adapter checked, the rows stored.

The HTTP layer has already bounded the upload's size, authenticated the caller, checked that it may use
the adapter and charged its rate limit; what is left is the file and the job itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from serve_app.config import UploadLimits
from serve_app.db.errors import JOB_STORE, database_errors
from serve_app.jobs.files import read_table
from serve_app.jobs.store import JobStatus, JobStore
from serve_app.schemas import JobParams


class JobSubmission:
    def __init__(
        self,
        store: JobStore,
        resolve_adapter: Callable[[str], Awaitable[str]],
        max_rows: int,
        limits: UploadLimits | None = None,
    ):
        """``resolve_adapter``: a registered adapter's ref, ``UnknownAdapter`` for any other name."""
        self.store = store
        self.resolve_adapter = resolve_adapter
        self.max_rows = max_rows
        self.limits = limits or UploadLimits()

    async def submit(self, tenant: str, params: JobParams, data: bytes, content_type: str | None) -> JobStatus:
        """The new job of ``tenant`` over the file ``data``: ``UnreadableFile`` (422) for a file that cannot
        be read as a table with a bank column, ``TooManyRows`` (413), ``UnknownAdapter`` (404)."""
        table = await asyncio.to_thread(
            read_table,
            data,
            format=params.format,
            content_type=content_type,
            encoding=params.encoding,
            column=params.column,
            max_rows=self.max_rows,
            limits=self.limits,
        )
        # An unknown adapter is refused now, not row by row; a known one is pinned to its current revision,
        # so that re-registering it mid-job cannot mix two revisions' answers in one file.
        adapter = None if params.model is None else await self.resolve_adapter(params.model)
        filename = params.filename or f"upload.{table.format}"
        with database_errors(JOB_STORE):
            return await self.store.submit(tenant, filename, table, adapter)
