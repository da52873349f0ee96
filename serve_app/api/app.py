"""The Starlette application: a route per ``Endpoint`` (admin routes guarded), each handler's reply sent
with the route table's status, admission control in front, every error through the one error table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from serve_app import errors as e
from serve_app.api.admission import Admission
from serve_app.api.endpoints import ENDPOINTS, Endpoint
from serve_app.api.errors import on_http_error, on_service_error, on_unexpected
from serve_app.api.handlers import WEB_ROOT, Handlers
from serve_app.api.openapi import openapi_document
from serve_app.api.parts import Api
from serve_app.api.responses import respond


def _route(handlers: Handlers, endpoint: Endpoint) -> Route:
    handler: Callable[[Request], Awaitable[object]] = getattr(handlers, endpoint.name)

    async def endpoint_route(request: Request) -> Response:
        if endpoint.admin:
            await handlers.require_admin(request)
        return respond(endpoint.status, await handler(request))  # type: ignore[arg-type]

    return Route(endpoint.path, endpoint_route, methods=[endpoint.method], name=endpoint.name)


def build_http_app(api: Api, admission: tuple[int, int] | None = None) -> Starlette:
    """The API over ``api``'s parts; ``admission`` = (max in flight, max waiting), or unbounded."""
    handlers = Handlers(api, openapi_document(ENDPOINTS))
    middleware = []
    if admission is not None:
        middleware.append(Middleware(Admission, max_in_flight=admission[0], max_waiting=admission[1]))
    return Starlette(
        routes=[
            *(_route(handlers, endpoint) for endpoint in ENDPOINTS),
            Mount("/static", app=StaticFiles(directory=WEB_ROOT), name="static"),
        ],
        middleware=middleware,
        exception_handlers={
            e.ServiceError: on_service_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
    )
