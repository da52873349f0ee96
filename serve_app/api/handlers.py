"""The handlers: one method per ``Endpoint.name``, each returning a reply (or a response) or raising a
domain error. Who is calling and what a request costs in rate-limit tokens is decided here, and only here;
what the answer is, in the services."""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

from serve_app import errors as e
from serve_app.api.body import BodyPace, read_body, read_json, validate
from serve_app.api.endpoints import XLSX_TYPE
from serve_app.api.errors import render
from serve_app.api.guards import PAGE_HEADERS, check_local, idempotency_key
from serve_app.api.parts import Api
from serve_app.api.responses import Body, Reply, attachment
from serve_app.api.review_routes import ReviewRoutes
from serve_app.api.training_routes import TrainingRoutes
from serve_app.db.errors import API_KEYS, JOB_STORE, database_errors
from serve_app.directory.browse import BrowseQuery, DirectoryBrowser
from serve_app.directory.history import ChangeQuery
from serve_app.jobs.outputs import ResultQuery, output_header
from serve_app.jobs.recheck import recheck_job
from serve_app.jobs.results import csv_text, result_filename
from serve_app.jobs.store import JobQuota, JobStatus, JobStore
from serve_app.jobs.submission import JobSubmission
from serve_app.jobs.workbooks import result_workbook
from serve_app.models.adapters import AdapterIn
from serve_app.schemas import (
    MAX_QUERY_CHARS,
    BatchItem,
    BatchRequest,
    BatchResponse,
    JobParams,
    QueryRequest,
    validation_message,
)
from serve_app.service.tenants import Caller, open_caller
from serve_app.timing import ms_since

#: Room per line of a batch body: the longest query in UTF-8 (4 bytes a character at most), quoted.
BATCH_BYTES_PER_LINE = MAX_QUERY_CHARS * 4 + 16
#: A batch or a job costs one rate-limit token per this many lines (rows); every other request costs one.
LINES_PER_TOKEN = 100
#: The web page's files (no build step, nothing fetched at run time).
WEB_ROOT = Path(str(resources.files("serve_app") / "web"))


class Handlers(ReviewRoutes, TrainingRoutes):
    def __init__(self, api: Api, openapi: dict[str, Any]):
        if api.config.auth == "keys" and api.keys is None:
            raise ValueError("auth: keys needs a key store")
        self.api = api
        self.service, self.admin, self.config = api.service, api.admin, api.config
        self.openapi_document = openapi
        config = self.config
        self.pace = BodyPace(config.body_grace_s, config.min_body_bytes_per_s)
        quota = JobQuota(config.max_active_jobs_per_tenant, config.max_stored_rows_per_tenant)
        self.submission = (
            None
            if api.jobs is None
            else JobSubmission(api.jobs, self.service.adapter_ref, config.max_job_rows, config.upload_limits, quota)
        )

    # --- who is calling, and what it costs ---------------------------------------------------------

    async def require_admin(self, request: Request) -> None:
        token = self.api.admin_token
        if token is None:
            raise e.AdminDisabled("admin API disabled: set SERVE_APP_ADMIN_TOKEN")
        supplied = request.headers.get("authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            await self._failed_credential(request)
            raise e.Unauthorized("admin token required (Authorization: Bearer …)")

    async def caller(self, request: Request) -> Caller:
        """Who is calling: a key's tenant (``auth: keys``), else the open tenant keyed by client address."""
        if self.config.auth == "keys":
            assert self.api.keys is not None
            try:
                with database_errors(API_KEYS):
                    return await self.api.keys.caller(request.headers.get("x-api-key"))
            except e.Unauthorized:
                await self._failed_credential(request)
                raise
        if not self.config.open_to_network:
            check_local(request)
        return open_caller(request.client.host if request.client else "unknown")

    async def _failed_credential(self, request: Request) -> None:
        """A wrong key or admin token costs its client address a token of its own bucket: guessing is
        ``RateLimited`` (429) after a burst, and costs the database nothing more."""
        host = request.client.host if request.client else "unknown"
        await self.service.take_tokens(Caller(tenant="-", rate_key=f"failed-credentials:{host}"), 1)

    def check_adapter(self, caller: Caller, name: str | None) -> None:
        """``Forbidden`` if ``caller`` may not name adapter ``name``; ``ModelWarming`` while the model replicas
        are still being built (``ingress.model_warming``)."""
        caller.check_adapter(name)
        if name is not None and self.config.model_warming:
            raise e.ModelWarming(
                "the model replicas are still starting (the demo model is being built: see /readyz); retry in a "
                "minute, or ask without naming an adapter"
            )

    async def charged_caller(self, request: Request) -> Caller:
        """``caller``, charged the one token a request costs."""
        caller = await self.caller(request)
        await self.service.take_tokens(caller, 1)
        return caller

    @property
    def browser(self) -> DirectoryBrowser:
        return _built_with(self.api.browser, "a directory browser")

    @property
    def jobs(self) -> JobStore:
        return _built_with(self.api.jobs, "a job store")

    # --- queries and the directory ------------------------------------------------------------------

    async def query(self, request: Request) -> Body:
        caller = await self.caller(request)
        body = await read_json(request, QueryRequest, self.config.max_body_bytes, self.pace)
        self.check_adapter(caller, body.model)
        started = time.perf_counter()
        await self.service.take_tokens(caller, 1)
        return await self.service.query(body, caller, {"rate_limit": ms_since(started)}, started)

    async def query_batch(self, request: Request) -> Body:
        caller = await self.caller(request)
        limit = self.config.max_batch_lines
        body = await read_json(request, BatchRequest, limit * BATCH_BYTES_PER_LINE + 1024, self.pace)
        if len(body.queries) > limit:
            raise e.TooManyRows(f"at most {limit} queries per batch; use POST /api/v1/jobs for files")
        self.check_adapter(caller, body.model)
        await self.service.take_tokens(caller, math.ceil(len(body.queries) / LINES_PER_TOKEN))
        items: list[BatchItem | QueryRequest] = []
        for text in body.queries:  # a line the service refuses is an error in its place
            try:
                items.append(QueryRequest(query=text, model=body.model, top_k=body.top_k))
            except ValidationError as exc:
                items.append(BatchItem(error=render(e.InvalidRequest(validation_message(exc)))[1]["error"]))
        requests = [item for item in items if isinstance(item, QueryRequest)]
        answers = iter(await self.service.batch(requests, body.model, caller))
        results = [item if isinstance(item, BatchItem) else BatchItem(result=next(answers)) for item in items]
        return BatchResponse(results=results)

    async def browse(self, request: Request) -> Body:
        await self.charged_caller(request)
        query = validate(BrowseQuery, dict(request.query_params))
        return await self.browser.branches(query)

    async def branch(self, request: Request) -> Body:
        await self.charged_caller(request)
        return await self.service.branch(request.path_params["code"])

    async def directory(self, request: Request) -> Body:
        await self.charged_caller(request)
        return await _built_with(self.api.history, "a directory history").info()

    async def directory_changes(self, request: Request) -> Body:
        await self.charged_caller(request)
        query = validate(ChangeQuery, dict(request.query_params))
        return await _built_with(self.api.history, "a directory history").changes(query)

    async def banks(self, request: Request) -> Body:
        await self.charged_caller(request)
        return await self.browser.banks(self.service.data_version)

    # --- bulk jobs -------------------------------------------------------------------------------------

    async def submit_job(self, request: Request) -> Reply:
        caller = await self.charged_caller(request)
        params = validate(JobParams, dict(request.query_params))
        self.check_adapter(caller, params.model)
        submission = _built_with(self.submission, "a job store")
        key = idempotency_key(request)
        if key is not None and (replayed := await submission.replayed(caller.tenant, key)) is not None:
            return Reply(replayed, headers={"location": f"/api/v1/jobs/{replayed.id}"})  # nothing read or charged
        data = await read_body(request, self.config.max_upload_bytes, self.pace)
        table = await submission.read(params, data, request.headers.get("content-type"))
        # A job costs by its rows, as a batch does (the first token was charged on arrival).
        await self.service.take_tokens(caller, max(math.ceil(len(table.rows) / LINES_PER_TOKEN) - 1, 0))
        status = await submission.store(caller.tenant, params, table, key)
        return Reply(status, headers={"location": f"/api/v1/jobs/{status.id}"})

    async def list_jobs(self, request: Request) -> Body:
        caller = await self.charged_caller(request)
        with database_errors(JOB_STORE):
            return await self.jobs.recent(caller.tenant)

    async def job(self, request: Request) -> Body:
        caller = await self.charged_caller(request)
        with database_errors(JOB_STORE):
            return await self.jobs.status(caller.tenant, request.path_params["job_id"])

    async def _result_pages(self, request: Request) -> tuple[JobStatus, AsyncIterator[list[list[str]]]]:
        caller = await self.charged_caller(request)
        with database_errors(JOB_STORE):
            return await self.jobs.result_pages(caller.tenant, request.path_params["job_id"])

    async def job_result_csv(self, request: Request) -> Response:
        lang = validate(ResultQuery, dict(request.query_params)).lang
        status, pages = await self._result_pages(request)

        async def body() -> AsyncIterator[str]:
            yield "\ufeff" + csv_text([output_header(status.columns, lang)])  # the BOM: spreadsheets read UTF-8
            async for page in pages:
                yield csv_text(page)

        headers = attachment(result_filename(status.filename, "csv"))
        return StreamingResponse(body(), media_type="text/csv; charset=utf-8", headers=headers)

    async def job_result_xlsx(self, request: Request) -> Response:
        caller = await self.charged_caller(request)
        lang = validate(ResultQuery, dict(request.query_params)).lang
        with database_errors(JOB_STORE):
            status, data = await result_workbook(self.jobs, caller.tenant, request.path_params["job_id"], lang)
        return Response(data, media_type=XLSX_TYPE, headers=attachment(result_filename(status.filename, "xlsx")))

    async def recheck_job(self, request: Request) -> Body:
        caller = await self.charged_caller(request)
        job_id, service = request.path_params["job_id"], self.service
        with database_errors(JOB_STORE):
            return await recheck_job(
                self.jobs, service.answer, caller.tenant, job_id, service.data_version, service.directory_as_of
            )

    async def delete_job(self, request: Request) -> Body:
        caller = await self.charged_caller(request)
        with database_errors(JOB_STORE):
            await self.jobs.delete(caller.tenant, request.path_params["job_id"])
        return None

    # --- admin and probes ----------------------------------------------------------------------------

    async def model_cache_stats(self, request: Request) -> Body:
        return await self.admin.model_cache_stats()

    async def clear_model_cache(self, request: Request) -> Body:
        return await self.admin.clear_model_cache()

    async def list_adapters(self, request: Request) -> Body:
        return await self.admin.list_adapters()

    async def register_adapter(self, request: Request) -> Body:
        return await self.admin.register_adapter(
            await read_json(request, AdapterIn, self.config.max_body_bytes, self.pace)
        )

    async def delete_adapter(self, request: Request) -> Body:
        await self.admin.delete_adapter(request.path_params["name"])
        return None

    async def stats(self, request: Request) -> Body:
        return self.api.replica_stats()

    async def healthz(self, request: Request) -> Body:
        return {"status": "ok"}

    async def readyz(self, request: Request) -> Body:
        await self.service.check_database()
        ready = {"status": "ready", "data_version": self.service.data_version}
        if self.config.model_warming:  # answering from the rules while the model is built
            return ready | {"models": "warming", "warming": self.api.build_progress()}
        return ready | {"models": await self.admin.model_state()}

    async def openapi(self, request: Request) -> Body:
        return self.openapi_document

    async def page(self, request: Request) -> Response:
        return FileResponse(WEB_ROOT / "index.html", media_type="text/html", headers=PAGE_HEADERS)


T = TypeVar("T")


def _built_with(part: T | None, what: str) -> T:
    """A part the API may be built without (tests of other parts): missing, its routes fail as internal."""
    if part is None:
        raise RuntimeError(f"this API was built without {what}")
    return part
