"""The HTTP API (Starlette): routing, validation, auth and error mapping — nothing else.

Every error leaves as JSON ``{"error": {"code", "message"}}`` with a fitting status; bad input is a 4xx
and never reaches a back-end; no stack trace is ever sent.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Protocol

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serve_app.models.adapters import AdapterIn, AdapterOut
from serve_app.schemas import BranchRecordOut, QueryRequest, QueryResult
from serve_app.service.errors import ApiError
from serve_app.service.query_service import QueryService

log = logging.getLogger(__name__)


class AdminOps(Protocol):
    async def model_cache_stats(self) -> dict: ...
    async def clear_model_cache(self) -> dict: ...
    async def models_ready(self) -> bool: ...
    async def list_adapters(self) -> list[AdapterOut]: ...
    async def register_adapter(self, adapter: AdapterIn) -> AdapterOut: ...
    async def delete_adapter(self, name: str) -> bool: ...
    def service_stats(self) -> dict: ...


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def build_http_app(
    service: QueryService, admin: AdminOps, admin_token: SecretStr | None, max_body_bytes: int = 16_384
) -> Starlette:
    async def read_json(request: Request, model: type[BaseModel]) -> BaseModel:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_body_bytes):
            raise ApiError(413, "body_too_large", f"request body is limited to {max_body_bytes} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                raise ApiError(413, "body_too_large", f"request body is limited to {max_body_bytes} bytes")
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, "invalid_json", f"body is not UTF-8 JSON: {exc}") from exc
        except RecursionError as exc:  # a small body can nest deeper than the parser recurses
            raise ApiError(400, "invalid_json", "body nests too deeply") from exc
        if not isinstance(data, dict):
            raise ApiError(422, "invalid_request", "body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", _validation_message(exc)) from exc

    def require_admin(request: Request) -> None:
        if admin_token is None:
            raise ApiError(403, "admin_disabled", "admin API disabled: set SERVE_APP_ADMIN_TOKEN")
        supplied = request.headers.get("authorization", "")
        expected = f"Bearer {admin_token.get_secret_value()}"
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            raise ApiError(401, "unauthorized", "admin token required (Authorization: Bearer …)")

    def client_key(request: Request) -> str:
        api_key = request.headers.get("x-api-key")
        if api_key:
            return f"key:{api_key[:128]}"
        return f"ip:{request.client.host if request.client else 'unknown'}"

    async def query(request: Request) -> Response:
        body = await read_json(request, QueryRequest)
        result = await service.query(body, client_key(request))
        return Response(result.model_dump_json(), media_type="application/json")

    async def branch(request: Request) -> Response:
        record = await service.branch(request.path_params["code"])
        return Response(record.model_dump_json(), media_type="application/json")

    async def model_cache_stats(request: Request) -> Response:
        require_admin(request)
        return JSONResponse(await admin.model_cache_stats())

    async def clear_model_cache(request: Request) -> Response:
        require_admin(request)
        return JSONResponse(await admin.clear_model_cache())

    async def adapters(request: Request) -> Response:
        require_admin(request)
        if request.method == "GET":
            return JSONResponse([a.model_dump(mode="json") for a in await admin.list_adapters()])
        body = await read_json(request, AdapterIn)
        created = await admin.register_adapter(body)
        return JSONResponse(created.model_dump(mode="json"), status_code=201)

    async def adapter(request: Request) -> Response:
        require_admin(request)
        name = request.path_params["name"]
        if not await admin.delete_adapter(name):
            raise ApiError(404, "unknown_model", f"no adapter named {name!r} is registered")
        return Response(status_code=204)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        await service.check_database()
        if not await admin.models_ready():
            raise ApiError(503, "not_ready", "model replicas are still warming up", {"Retry-After": "5"})
        return JSONResponse({"status": "ready", "data_version": service.data_version})

    async def stats(request: Request) -> Response:
        require_admin(request)
        return JSONResponse(admin.service_stats())

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    async def on_api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        return error_response(ApiError(status, code, getattr(exc, "detail", "") or code))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(ApiError(500, "internal_error", "internal error; it has been logged"))

    return Starlette(
        routes=[
            Route("/api/v1/query", query, methods=["POST"]),
            Route("/api/v1/branches/{code}", branch, methods=["GET"]),
            Route("/api/v1/query/model-cache-stats", model_cache_stats, methods=["GET"]),
            Route("/api/v1/query/clear-model-cache", clear_model_cache, methods=["POST"]),
            Route("/api/v1/adapters", adapters, methods=["GET", "POST"]),
            Route("/api/v1/adapters/{name}", adapter, methods=["DELETE"]),
            Route("/api/v1/stats", stats, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        exception_handlers={ApiError: on_api_error, HTTPException: on_http_error, Exception: on_unexpected},
    )


def _openapi() -> dict:
    _, schemas = models_json_schema(
        [(m, "validation") for m in (QueryRequest, QueryResult, BranchRecordOut, AdapterIn, AdapterOut)],
        ref_template="#/components/schemas/{model}",
    )
    error = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                "required": ["code", "message"],
            }
        },
        "required": ["error"],
    }
    components = schemas.get("$defs", {}) | {"Error": error}

    def ref(name: str) -> dict:
        return {"$ref": f"#/components/schemas/{name}"}

    def errors(*statuses: int) -> dict:
        return {
            str(s): {"description": "error", "content": {"application/json": {"schema": ref("Error")}}}
            for s in statuses
        }

    def ok(schema: dict, status: int = 200) -> dict:
        return {str(status): {"description": "ok", "content": {"application/json": {"schema": schema}}}}

    admin = [{"bearerAuth": []}]
    return {
        "openapi": "3.0.3",
        "info": {"title": "serve-app bank-branch query API", "version": "1"},
        "components": {"schemas": components, "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/api/v1/query": {
                "post": {
                    "requestBody": {"required": True, "content": {"application/json": {"schema": ref("QueryRequest")}}},
                    "responses": ok(ref("QueryResult")) | errors(400, 404, 413, 422, 429, 503, 504),
                }
            },
            "/api/v1/branches/{code}": {
                "get": {
                    "parameters": [{"name": "code", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": ok(ref("BranchRecordOut")) | errors(404, 422, 503, 504),
                }
            },
            "/api/v1/query/model-cache-stats": {
                "get": {"security": admin, "responses": ok({"type": "object"}) | errors(401, 403, 503)}
            },
            "/api/v1/query/clear-model-cache": {
                "post": {"security": admin, "responses": ok({"type": "object"}) | errors(401, 403, 503)}
            },
            "/api/v1/adapters": {
                "get": {
                    "security": admin,
                    "responses": ok({"type": "array", "items": ref("AdapterOut")}) | errors(401, 403),
                },
                "post": {
                    "security": admin,
                    "requestBody": {"required": True, "content": {"application/json": {"schema": ref("AdapterIn")}}},
                    "responses": ok(ref("AdapterOut"), 201) | errors(400, 401, 403, 409, 413, 422),
                },
            },
            "/api/v1/adapters/{name}": {
                "delete": {
                    "security": admin,
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {"204": {"description": "deleted"}} | errors(401, 403, 404),
                }
            },
            "/healthz": {"get": {"responses": ok({"type": "object"})}},
            "/readyz": {"get": {"responses": ok({"type": "object"}) | errors(503)}},
        },
    }


OPENAPI = _openapi()
