"""The HTTP API (Starlette): the route table, request parsing and auth — nothing else.

Each ``Endpoint`` names its handler, its request and response models and the domain errors it may
raise; the Starlette routes and the OpenAPI document (``openapi.py``) are both made from ``ENDPOINTS``,
so neither can miss a route. Errors become responses through the one table in ``service.errors``; bad
input is a 4xx that never reaches a back-end; no stack trace is ever sent.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel, SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serve_app import errors as e
from serve_app.models.adapters import AdapterIn, AdapterOut
from serve_app.schemas import BranchRecordOut, QueryRequest, QueryResult
from serve_app.service.admin import AdminService
from serve_app.service.admission import Admission
from serve_app.service.errors import error_body, render, spec_for
from serve_app.service.query_service import QueryService

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
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


ENDPOINTS = (
    Endpoint("POST", "/api/v1/query", "query", "Answer one free-text query with a verdict.",
             QueryRequest, QueryResult,
             errors=(e.RateLimited, e.UnknownAdapter, e.AdapterInvalid, e.NoModelDeployment, e.Overloaded,
                     e.ModelUnavailable, *DEPENDENCY_ERRORS)),
    Endpoint("GET", "/api/v1/branches/{code}", "branch", "The directory record of a CNAPS code.",
             response=BranchRecordOut, errors=(e.InvalidCode, e.UnknownCode, *DEPENDENCY_ERRORS)),
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
)  # fmt: skip


def error_response(exc: BaseException) -> JSONResponse:
    status, body, headers = render(exc)
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


class _Handlers:
    """One method per ``Endpoint.name``; each returns a response or raises a domain error."""

    def __init__(
        self,
        service: QueryService,
        admin: AdminService,
        replica_stats: Callable[[], dict],
        admin_token: SecretStr | None,
        max_body_bytes: int,
        openapi: dict,
    ):
        self.service, self.admin, self.replica_stats = service, admin, replica_stats
        self.admin_token, self.max_body_bytes, self.openapi_document = admin_token, max_body_bytes, openapi

    async def read_json(self, request: Request, model: type[BaseModel]):
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise e.BodyTooLarge(f"request body is limited to {limit} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise e.BodyTooLarge(f"request body is limited to {limit} bytes")
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise e.MalformedBody(f"body is not UTF-8 JSON: {exc}") from exc
        except RecursionError as exc:  # a small body can nest deeper than the parser recurses
            raise e.MalformedBody("body nests too deeply") from exc
        if not isinstance(data, dict):
            raise e.InvalidRequest("body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise e.InvalidRequest(_validation_message(exc)) from exc

    def require_admin(self, request: Request) -> None:
        if self.admin_token is None:
            raise e.AdminDisabled("admin API disabled: set SERVE_APP_ADMIN_TOKEN")
        supplied = request.headers.get("authorization", "")
        expected = f"Bearer {self.admin_token.get_secret_value()}"
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            raise e.Unauthorized("admin token required (Authorization: Bearer …)")

    @staticmethod
    def client_key(request: Request) -> str:
        api_key = request.headers.get("x-api-key")
        if api_key:
            return f"key:{api_key[:128]}"
        return f"ip:{request.client.host if request.client else 'unknown'}"

    async def query(self, request: Request) -> Response:
        body = await self.read_json(request, QueryRequest)
        result = await self.service.query(body, self.client_key(request))
        return Response(result.model_dump_json(), media_type="application/json")

    async def branch(self, request: Request) -> Response:
        record = await self.service.branch(request.path_params["code"])
        return Response(record.model_dump_json(), media_type="application/json")

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
        return JSONResponse(self.replica_stats())

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        await self.service.check_database()
        models = await self.admin.model_state()
        return JSONResponse({"status": "ready", "models": models, "data_version": self.service.data_version})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self.openapi_document)

    def route(self, endpoint: Endpoint) -> Route:
        handler: Handler = getattr(self, endpoint.name)
        if endpoint.admin:

            async def guarded(request: Request) -> Response:
                self.require_admin(request)
                return await handler(request)

            return Route(endpoint.path, guarded, methods=[endpoint.method], name=endpoint.name)
        return Route(endpoint.path, handler, methods=[endpoint.method], name=endpoint.name)


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


def build_http_app(
    service: QueryService,
    admin: AdminService,
    replica_stats: Callable[[], dict],
    admin_token: SecretStr | None,
    max_body_bytes: int = 16_384,
    admission: tuple[int, int] | None = None,
) -> Starlette:
    """The API over ``service`` and ``admin``; ``admission`` = (max in flight, max waiting), or unbounded."""
    from serve_app.service.openapi import openapi_document

    handlers = _Handlers(service, admin, replica_stats, admin_token, max_body_bytes, openapi_document(ENDPOINTS))
    middleware = []
    if admission is not None:
        middleware.append(Middleware(Admission, max_in_flight=admission[0], max_waiting=admission[1]))
    return Starlette(
        routes=[handlers.route(endpoint) for endpoint in ENDPOINTS],
        middleware=middleware,
        exception_handlers={
            e.ServiceError: _on_service_error,
            HTTPException: _on_http_error,
            Exception: _on_unexpected,
        },
    )
