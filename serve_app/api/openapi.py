"""The OpenAPI 3 document, generated from the route table (``endpoints.ENDPOINTS``) and the error table.

Every route appears with its request and response schemas and every status its declared errors map to,
plus the ones any route of its kind can give: a body's 400/413/422, an admin route's 401/403, and the
503 ``overloaded`` of admission control on everything but the probes.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from serve_app import errors as e
from serve_app.api.admission import PROBES
from serve_app.api.endpoints import Endpoint
from serve_app.api.errors import ERRORS, HTTP_ERROR_CODES, INTERNAL, statuses

#: Every code a client can get, from the one error table (and Starlette's own, and the internal one).
_ERROR_CODES = sorted({spec.code for spec in ERRORS.values()} | set(HTTP_ERROR_CODES.values()) | {INTERNAL.code})
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string", "enum": _ERROR_CODES}, "message": {"type": "string"}},
            "required": ["code", "message"],
            "additionalProperties": True,  # an error's details (a retired code's record)
        }
    },
    "required": ["error"],
}
_BODY_ERRORS = (e.MalformedBody, e.BodyTooLarge, e.InvalidRequest)
_ADMIN_ERRORS = (e.Unauthorized, e.AdminDisabled)
_TENANT_ERRORS = (e.Unauthorized, e.Forbidden, e.RateLimited)
_UPLOAD_TYPES = (
    "text/csv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/x-ndjson",
)


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    declared: list[type[e.ServiceError]] = list(endpoint.errors)
    if endpoint.request is not None:
        declared += _BODY_ERRORS
    if endpoint.admin:
        declared += _ADMIN_ERRORS
    if endpoint.tenant:
        declared += _TENANT_ERRORS
    if endpoint.query is not None:
        declared.append(e.InvalidRequest)
    if endpoint.path not in PROBES:
        declared.append(e.Overloaded)
    if endpoint.status == 204:
        responses: dict[str, Any] = {"204": {"description": "done"}}
    else:
        schema: dict[str, Any] = {"type": "object"}
        if endpoint.response is not None:
            schema = _ref(endpoint.response.__name__)
            if endpoint.response_list:
                schema = {"type": "array", "items": schema}
        if endpoint.media_type != "application/json":
            schema = {"type": "string"}
        content = {endpoint.media_type: {"schema": schema}}
        responses = {str(endpoint.status): {"description": "ok", "content": content}}
    for status in statuses(*declared):
        responses[str(status)] = {"description": "error", "content": {"application/json": {"schema": _ref("Error")}}}
    operation: dict[str, Any] = {"summary": endpoint.summary, "operationId": endpoint.name, "responses": responses}
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", endpoint.path)
    ]
    if endpoint.query is not None:
        for name, field in endpoint.query.model_fields.items():
            parameter_schema = {"type": "integer"} if field.annotation is int else {"type": "string"}
            parameters.append(
                {"name": name, "in": "query", "required": False, "description": field.description or "",
                 "schema": parameter_schema}
            )  # fmt: skip
    if parameters:
        operation["parameters"] = parameters
    if endpoint.request is not None:
        content = {"application/json": {"schema": _ref(endpoint.request.__name__)}}
        operation["requestBody"] = {"required": True, "content": content}
    if endpoint.upload:
        upload = {"schema": {"type": "string", "format": "binary"}}
        operation["requestBody"] = {"required": True, "content": dict.fromkeys(_UPLOAD_TYPES, upload)}
    if endpoint.admin:
        operation["security"] = [{"bearerAuth": []}]
    if endpoint.tenant:
        operation["security"] = [{"apiKey": []}, {}]  # {}: none needed in open mode
    return operation


def openapi_document(endpoints: tuple[Endpoint, ...]) -> dict[str, Any]:
    models: dict[str, type[BaseModel]] = {}
    for endpoint in endpoints:
        for model in (endpoint.request, endpoint.response):
            if model is not None:
                models[model.__name__] = model
    _, schemas = models_json_schema(
        [(model, "validation") for model in models.values()], ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.0.3",
        "info": {"title": "serve-app bank-branch query API", "version": "1"},
        "components": {
            "schemas": schemas.get("$defs", {}) | {"Error": _ERROR_SCHEMA},
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "paths": paths,
    }
