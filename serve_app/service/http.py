"""The HTTP API (Starlette): the route table, request parsing and auth — nothing else.

Each ``Endpoint`` names its handler, its request and response models and the domain errors it may
raise; the Starlette routes and the OpenAPI document (``openapi.py``) are both made from ``ENDPOINTS``,
so neither can miss a route. Errors become responses through the one table in ``service.errors``; bad
input is a 4xx that never reaches a back-end; no stack trace is ever sent.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from pydantic import BaseModel, SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from serve_app import errors as e
from serve_app.browse import BankOut, BranchPage, BrowseQuery, DirectoryBrowser
from serve_app.config import IngressConfig
from serve_app.jobs.files import read_table
from serve_app.jobs.results import csv_text, result_filename, result_header, xlsx_bytes
from serve_app.jobs.store import JobStatus, JobStore
from serve_app.models.adapters import AdapterIn, AdapterOut
from serve_app.schemas import (
    MAX_QUERY_CHARS,
    BatchRequest,
    BatchResponse,
    BranchRecordOut,
    JobParams,
    QueryRequest,
    QueryResult,
    validation_message,
)
from serve_app.service.admin import AdminService
from serve_app.service.admission import Admission
from serve_app.service.database import database_errors
from serve_app.service.errors import error_body, render, spec_for
from serve_app.service.query_service import QueryService
from serve_app.service.tenants import Caller, KeyStore, open_caller

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
ModelT = TypeVar("ModelT", bound=BaseModel)
#: Room per line of a batch body: the longest query in UTF-8 (4 bytes a character at most), quoted.
BATCH_BYTES_PER_LINE = MAX_QUERY_CHARS * 4 + 16
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: The web page's files (no build step, nothing fetched at run time).
WEB_ROOT = Path(str(resources.files("serve_app") / "web"))
DEPENDENCY_ERRORS = (e.DependencyUnavailable, e.DependencyTimeout)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    name: str  # the handler's name in ``_Handlers``
    summary: str
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    response_list: bool = False
    status: int = 200
    errors: tuple[type[e.ServiceError], ...] = ()
    admin: bool = False
    tenant: bool = False  # needs a tenant's API key when the service runs with keys
    query: type[BaseModel] | None = None  # the query string's model
    upload: bool = False  # the body is a file (CSV, XLSX, JSON lines)
    media_type: str = "application/json"


JOB_ERRORS = (e.UnknownJob, *DEPENDENCY_ERRORS)
ENDPOINTS = (
    Endpoint("POST", "/api/v1/query", "query", "Answer one free-text query with a verdict.",
             QueryRequest, QueryResult,
             errors=(e.RateLimited, e.UnknownAdapter, e.AdapterInvalid, e.NoModelDeployment, e.Overloaded,
                     e.ModelUnavailable, *DEPENDENCY_ERRORS), tenant=True),
    Endpoint("POST", "/api/v1/query/batch", "query_batch", "Answer up to max_batch_lines queries, in order.",
             BatchRequest, BatchResponse,
             errors=(e.TooManyRows, e.RateLimited, e.UnknownAdapter, e.AdapterInvalid, e.NoModelDeployment,
                     e.Overloaded, e.ModelUnavailable, *DEPENDENCY_ERRORS), tenant=True),
    Endpoint("GET", "/api/v1/branches", "browse", "Directory records by bank, place and name text, a page at a time.",
             response=BranchPage, query=BrowseQuery, errors=DEPENDENCY_ERRORS, tenant=True),
    Endpoint("GET", "/api/v1/branches/{code}", "branch", "The directory record of a CNAPS code.",
             response=BranchRecordOut, errors=(e.InvalidCode, e.UnknownCode, *DEPENDENCY_ERRORS), tenant=True),
    Endpoint("GET", "/api/v1/banks", "banks", "Institutions with their branch counts.", response=BankOut,
             response_list=True, errors=DEPENDENCY_ERRORS, tenant=True),
    Endpoint("POST", "/api/v1/jobs", "submit_job", "Reconcile a statement file (CSV, XLSX, JSON lines) in bulk.",
             response=JobStatus, status=201, query=JobParams, upload=True,
             errors=(e.BodyTooLarge, e.UnreadableFile, e.TooManyRows, e.UnknownAdapter, e.RateLimited,
                     e.NoModelDeployment, *DEPENDENCY_ERRORS), tenant=True),
    Endpoint("GET", "/api/v1/jobs", "list_jobs", "The tenant's recent jobs.", response=JobStatus, response_list=True,
             errors=DEPENDENCY_ERRORS, tenant=True),
    Endpoint("GET", "/api/v1/jobs/{job_id}", "job", "A job's state and progress.", response=JobStatus,
             errors=JOB_ERRORS, tenant=True),
    Endpoint("GET", "/api/v1/jobs/{job_id}/result.csv", "job_result_csv", "Every input row with its answer (CSV).",
             errors=(e.JobNotDone, *JOB_ERRORS), tenant=True, media_type="text/csv"),
    Endpoint("GET", "/api/v1/jobs/{job_id}/result.xlsx", "job_result_xlsx", "Every input row with its answer (XLSX).",
             errors=(e.JobNotDone, *JOB_ERRORS), tenant=True, media_type=XLSX_TYPE),
    Endpoint("DELETE", "/api/v1/jobs/{job_id}", "delete_job", "Delete a job and its rows.", status=204,
             errors=JOB_ERRORS, tenant=True),
    Endpoint("GET", "/api/v1/query/model-cache-stats", "model_cache_stats", "Per-replica model statistics.",
             errors=(e.DependencyUnavailable,), admin=True),
    Endpoint("POST", "/api/v1/query/clear-model-cache", "clear_model_cache", "Unload every adapter.",
             errors=(e.DependencyUnavailable,), admin=True),
    Endpoint("GET", "/api/v1/adapters", "list_adapters", "Registered adapters.", response=AdapterOut,
             response_list=True, errors=DEPENDENCY_ERRORS, admin=True),
    Endpoint("POST", "/api/v1/adapters", "register_adapter", "Register an adapter folder.", AdapterIn, AdapterOut,
             status=201, errors=(e.AdapterInvalid, e.AdapterExists, e.NoModelDeployment, *DEPENDENCY_ERRORS),
             admin=True),
    Endpoint("DELETE", "/api/v1/adapters/{name}", "delete_adapter", "Remove an adapter from the registry.",
             status=204, errors=(e.UnknownAdapter, *DEPENDENCY_ERRORS), admin=True),
    Endpoint("GET", "/api/v1/stats", "stats", "This ingress replica's counters and tunables.", admin=True),
    Endpoint("GET", "/healthz", "healthz", "Liveness: the ingress answers."),
    Endpoint("GET", "/readyz", "readyz", "Readiness: the directory and the model replicas answer.",
             errors=(e.NotReady, e.DependencyUnavailable)),
    Endpoint("GET", "/openapi.json", "openapi", "This document."),
    Endpoint("GET", "/", "page", "The web page: search, browse, code lookup, file reconciliation.",
             media_type="text/html"),
)  # fmt: skip


def error_response(exc: BaseException) -> JSONResponse:
    status, body, headers = render(exc)
    return JSONResponse(body, status_code=status, headers=headers)


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


def _json_list(models: Sequence[BaseModel]) -> Response:
    return Response("[" + ",".join(model.model_dump_json() for model in models) + "]", media_type="application/json")


def _attachment(filename: str) -> dict[str, str]:
    """A Content-Disposition that carries a non-ASCII file name (RFC 6266) with an ASCII fallback."""
    fallback = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in filename)
    return {"content-disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"}


@dataclass(frozen=True)
class Api:
    """What the routes stand on. ``browser``, ``jobs`` and ``keys`` may be absent in tests of other parts
    (their routes then fail as internal errors); ``keys`` is required when ``config.auth`` is ``keys``."""

    service: QueryService
    admin: AdminService
    replica_stats: Callable[[], dict]
    admin_token: SecretStr | None
    config: IngressConfig = field(default_factory=IngressConfig)
    browser: DirectoryBrowser | None = None
    jobs: JobStore | None = None
    keys: KeyStore | None = None


class _Handlers:
    """One method per ``Endpoint.name``; each returns a response or raises a domain error."""

    def __init__(self, api: Api, openapi: dict):
        if api.config.auth == "keys" and api.keys is None:
            raise ValueError("auth: keys needs a key store")
        self.api = api
        self.service, self.admin, self.config = api.service, api.admin, api.config
        self.openapi_document = openapi

    async def read_body(self, request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise e.BodyTooLarge(f"request body is limited to {limit} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise e.BodyTooLarge(f"request body is limited to {limit} bytes")
        return bytes(body)

    async def read_json(self, request: Request, model: type[ModelT], limit: int | None = None) -> ModelT:
        body = await self.read_body(request, limit or self.config.max_body_bytes)
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise e.MalformedBody(f"body is not UTF-8 JSON: {exc}") from exc
        except RecursionError as exc:  # a small body can nest deeper than the parser recurses
            raise e.MalformedBody("body nests too deeply") from exc
        if not isinstance(data, dict):
            raise e.InvalidRequest("body must be a JSON object")
        return _validate(model, data)

    def require_admin(self, request: Request) -> None:
        token = self.api.admin_token
        if token is None:
            raise e.AdminDisabled("admin API disabled: set SERVE_APP_ADMIN_TOKEN")
        supplied = request.headers.get("authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            raise e.Unauthorized("admin token required (Authorization: Bearer …)")

    async def caller(self, request: Request, charge: bool = True) -> Caller:
        """Who is calling: a key's tenant (``auth: keys``), else the open tenant keyed by client address.
        ``charge``: take the request's rate-limit token here (queries and batches are charged by the service)."""
        if self.config.auth == "keys":
            assert self.api.keys is not None
            with database_errors("API keys (PostgreSQL)"):
                caller = await self.api.keys.caller(request.headers.get("x-api-key"))
        else:
            caller = open_caller(request.client.host if request.client else "unknown")
        if charge:
            await self.service.take_tokens(caller, 1)
        return caller

    def part(self, name: str):
        value = getattr(self.api, name)
        if value is None:
            raise RuntimeError(f"this API was built without {name}")
        return value

    async def query(self, request: Request) -> Response:
        caller = await self.caller(request, charge=False)
        body = await self.read_json(request, QueryRequest)
        return _json(await self.service.query(body, caller))

    async def query_batch(self, request: Request) -> Response:
        caller = await self.caller(request, charge=False)
        limit = self.config.max_batch_lines
        body = await self.read_json(request, BatchRequest, limit=limit * BATCH_BYTES_PER_LINE + 1024)
        if len(body.queries) > limit:
            raise e.TooManyRows(f"at most {limit} queries per batch; use POST /api/v1/jobs for files")
        items = await self.service.batch(body.queries, body.model, body.top_k, caller)
        return _json(BatchResponse(results=items))

    async def browse(self, request: Request) -> Response:
        await self.caller(request)
        query = _validate(BrowseQuery, dict(request.query_params))
        with database_errors():
            return _json(await self.part("browser").branches(query))

    async def branch(self, request: Request) -> Response:
        await self.caller(request)
        return _json(await self.service.branch(request.path_params["code"]))

    async def banks(self, request: Request) -> Response:
        await self.caller(request)
        with database_errors():
            banks = await self.part("browser").banks(self.service.data_version)
        return _json_list(banks)

    async def submit_job(self, request: Request) -> Response:
        caller = await self.caller(request)
        params = _validate(JobParams, dict(request.query_params))
        caller.check_adapter(params.model)
        jobs: JobStore = self.part("jobs")
        data = await self.read_body(request, self.config.max_upload_bytes)
        table = await asyncio.to_thread(
            read_table,
            data,
            format=params.format,
            content_type=request.headers.get("content-type"),
            encoding=params.encoding,
            column=params.column,
            max_rows=self.config.max_job_rows,
        )
        with database_errors():
            if params.model is not None:
                await self.service.adapter_ref(params.model)  # an unknown adapter is refused now
            status = await jobs.submit(caller.tenant, params.filename or f"upload.{table.format}", table, params.model)
        headers = {"location": f"/api/v1/jobs/{status.id}"}
        return Response(status.model_dump_json(), status_code=201, media_type="application/json", headers=headers)

    async def list_jobs(self, request: Request) -> Response:
        caller = await self.caller(request)
        with database_errors():
            jobs = await self.part("jobs").recent(caller.tenant)
        return _json_list(jobs)

    async def job(self, request: Request) -> Response:
        caller = await self.caller(request)
        with database_errors():
            return _json(await self.part("jobs").status(caller.tenant, request.path_params["job_id"]))

    async def _result_pages(self, request: Request):
        caller = await self.caller(request)
        with database_errors():
            return await self.part("jobs").result_pages(caller.tenant, request.path_params["job_id"])

    async def job_result_csv(self, request: Request) -> Response:
        status, pages = await self._result_pages(request)

        async def body():
            yield "\ufeff" + csv_text([result_header(status.columns)])  # the BOM: spreadsheets read it as UTF-8
            async for page in pages:
                yield csv_text(page)

        headers = _attachment(result_filename(status.filename, "csv"))
        return StreamingResponse(body(), media_type="text/csv; charset=utf-8", headers=headers)

    async def job_result_xlsx(self, request: Request) -> Response:
        status, pages = await self._result_pages(request)
        rows = [row async for page in pages for row in page]
        data = await asyncio.to_thread(xlsx_bytes, result_header(status.columns), rows)
        return Response(data, media_type=XLSX_TYPE, headers=_attachment(result_filename(status.filename, "xlsx")))

    async def delete_job(self, request: Request) -> Response:
        caller = await self.caller(request)
        with database_errors():
            await self.part("jobs").delete(caller.tenant, request.path_params["job_id"])
        return Response(status_code=204)

    async def model_cache_stats(self, request: Request) -> Response:
        return JSONResponse(await self.admin.model_cache_stats())

    async def clear_model_cache(self, request: Request) -> Response:
        return JSONResponse(await self.admin.clear_model_cache())

    async def list_adapters(self, request: Request) -> Response:
        return JSONResponse([a.model_dump(mode="json") for a in await self.admin.list_adapters()])

    async def register_adapter(self, request: Request) -> Response:
        created = await self.admin.register_adapter(await self.read_json(request, AdapterIn))
        return JSONResponse(created.model_dump(mode="json"), status_code=201)

    async def delete_adapter(self, request: Request) -> Response:
        await self.admin.delete_adapter(request.path_params["name"])
        return Response(status_code=204)

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.api.replica_stats())

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        await self.service.check_database()
        models = await self.admin.model_state()
        return JSONResponse({"status": "ready", "models": models, "data_version": self.service.data_version})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self.openapi_document)

    async def page(self, request: Request) -> Response:
        return FileResponse(WEB_ROOT / "index.html", media_type="text/html")

    def route(self, endpoint: Endpoint) -> Route:
        handler: Handler = getattr(self, endpoint.name)
        if endpoint.admin:

            async def guarded(request: Request) -> Response:
                self.require_admin(request)
                return await handler(request)

            return Route(endpoint.path, guarded, methods=[endpoint.method], name=endpoint.name)
        return Route(endpoint.path, handler, methods=[endpoint.method], name=endpoint.name)


def _validate(model: type[ModelT], data: dict) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise e.InvalidRequest(validation_message(exc)) from exc


async def _on_service_error(request: Request, exc: Exception) -> Response:
    return error_response(exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    return JSONResponse(error_body(code, getattr(exc, "detail", "") or code), status_code=status)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    if spec_for(exc).status == 500:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(exc)  # a ServiceError arriving wrapped (Ray) still maps by its class


def build_http_app(api: Api, admission: tuple[int, int] | None = None) -> Starlette:
    """The API over ``api``'s parts; ``admission`` = (max in flight, max waiting), or unbounded."""
    from serve_app.service.openapi import openapi_document

    handlers = _Handlers(api, openapi_document(ENDPOINTS))
    middleware = []
    if admission is not None:
        middleware.append(Middleware(Admission, max_in_flight=admission[0], max_waiting=admission[1]))
    return Starlette(
        routes=[
            *(handlers.route(endpoint) for endpoint in ENDPOINTS),
            Mount("/static", app=StaticFiles(directory=WEB_ROOT), name="static"),
        ],
        middleware=middleware,
        exception_handlers={
            e.ServiceError: _on_service_error,
            HTTPException: _on_http_error,
            Exception: _on_unexpected,
        },
    )
