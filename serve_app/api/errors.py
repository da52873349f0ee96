"""The one table from domain exceptions to what a client sees: HTTP status, stable code, Retry-After.

Every error leaves as JSON ``{"error": {"code", "message"}}`` (with an error's ``details`` beside them).
Anything not in the table is a 500 whose message says only that it was logged. The OpenAPI document
lists each route's errors from this table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from serve_app import errors as e

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    code: str
    retry_after_s: int | None = None  # default Retry-After; an exception's own value wins


ERRORS: dict[type[e.ServiceError], ErrorSpec] = {
    e.MalformedBody: ErrorSpec(400, "invalid_json"),
    e.Unauthorized: ErrorSpec(401, "unauthorized"),
    e.AdminDisabled: ErrorSpec(403, "admin_disabled"),
    e.Forbidden: ErrorSpec(403, "forbidden"),
    e.UnknownCode: ErrorSpec(404, "unknown_code"),
    e.UnknownAdapter: ErrorSpec(404, "unknown_model"),
    e.UnknownJob: ErrorSpec(404, "unknown_job"),
    e.UnknownRow: ErrorSpec(404, "unknown_row"),
    e.UnknownConfirmation: ErrorSpec(404, "unknown_confirmation"),
    e.UnknownTrainingRun: ErrorSpec(404, "unknown_training_run"),
    e.BodyTimeout: ErrorSpec(408, "body_timeout"),
    e.AdapterExists: ErrorSpec(409, "adapter_exists"),
    e.RetiredCode: ErrorSpec(410, "retired_code"),
    e.JobNotDone: ErrorSpec(409, "job_not_done", 2),
    e.TrainingInProgress: ErrorSpec(409, "training_in_progress", 30),
    e.BodyTooLarge: ErrorSpec(413, "body_too_large"),
    e.TooManyRows: ErrorSpec(413, "too_many_rows"),
    e.InvalidRequest: ErrorSpec(422, "invalid_request"),
    e.InvalidCode: ErrorSpec(422, "invalid_code"),
    e.UnreadableFile: ErrorSpec(422, "unreadable_file"),
    e.AdapterInvalid: ErrorSpec(422, "adapter_unusable"),
    e.NoModelDeployment: ErrorSpec(422, "no_model"),
    e.RateLimited: ErrorSpec(429, "rate_limited", 1),
    e.QuotaExceeded: ErrorSpec(429, "quota_exceeded", 60),
    e.DependencyUnavailable: ErrorSpec(503, "unavailable", 1),
    e.Overloaded: ErrorSpec(503, "overloaded", 1),
    e.ModelUnavailable: ErrorSpec(503, "model_unavailable", 1),
    e.AdapterNotLoaded: ErrorSpec(503, "model_unavailable", 1),  # a race that survived its retry
    e.NotReady: ErrorSpec(503, "not_ready", 5),
    e.ModelWarming: ErrorSpec(503, "model_warming", 30),
    e.DependencyTimeout: ErrorSpec(504, "timeout", 1),
}
INTERNAL = ErrorSpec(500, "internal_error")
#: Codes of the errors Starlette raises itself, by status.
HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed"}
INTERNAL_MESSAGE = "internal error; it has been logged"


def spec_for(exc: BaseException | type[BaseException]) -> ErrorSpec:
    """The entry for an exception (or class): its class's, or its nearest listed ancestor's; else ``INTERNAL``.
    An error a Ray replica raised arrives as a subclass of its own class, so it maps the same."""
    cls = exc if isinstance(exc, type) else type(exc)
    for ancestor in cls.__mro__:
        spec = ERRORS.get(ancestor)
        if spec is not None:
            return spec
    return INTERNAL


def statuses(*classes: type[e.ServiceError]) -> list[int]:
    """The distinct statuses ``classes`` map to, sorted (for the OpenAPI document)."""
    return sorted({spec_for(cls).status for cls in classes})


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **(details or {})}}


def render(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) for ``exc``. Unlisted exceptions never leak their message."""
    spec = spec_for(exc)
    if spec is INTERNAL:
        return spec.status, error_body(spec.code, INTERNAL_MESSAGE), {}
    retry_after = getattr(exc, "retry_after_s", None) or spec.retry_after_s
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    details = getattr(exc, "details", None)
    return spec.status, error_body(spec.code, getattr(exc, "message", str(exc)), details), headers


def error_response(exc: BaseException) -> JSONResponse:
    status, body, headers = render(exc)
    return JSONResponse(body, status_code=status, headers=headers)


async def on_service_error(request: Request, exc: Exception) -> Response:
    return error_response(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, wrong method) in the same JSON shape."""
    status = getattr(exc, "status_code", 500)
    code = HTTP_ERROR_CODES.get(status, "http_error")
    return JSONResponse(error_body(code, getattr(exc, "detail", "") or code), status_code=status)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    if spec_for(exc).status == 500:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(exc)  # a ServiceError arriving wrapped (Ray) still maps by its class
