"""The handlers of the review and confirmation routes: a job's rows to decide, a person's decision, and the
tenant's confirmations. A mixin of ``api.handlers.Handlers`` (which decides who calls and what it costs)."""

from __future__ import annotations

from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from serve_app import errors as e
from serve_app.api.body import BodyPace, read_json, validate
from serve_app.api.responses import Body, attachment
from serve_app.config import IngressConfig
from serve_app.db.errors import CONFIRMATIONS, JOB_STORE, database_errors
from serve_app.jobs.results import csv_text
from serve_app.jobs.review import DecisionIn, ReviewQuery, decide, review_page
from serve_app.jobs.store import JobStore
from serve_app.service.confirmations import ConfirmationQuery, ConfirmationStore
from serve_app.service.query_service import QueryService
from serve_app.service.tenants import Caller

#: The columns of the confirmations export.
EXPORT_HEADER = ["id", "text", "code", "name", "city", "decided_by", "decided_at", "job_id", "row"]


class Handlers(Protocol):
    """What these routes use of ``api.handlers.Handlers``."""

    service: QueryService
    config: IngressConfig
    pace: BodyPace

    @property
    def jobs(self) -> JobStore: ...

    async def charged_caller(self, request: Request) -> Caller: ...


class ReviewRoutes:
    async def review_job(self: Handlers, request: Request) -> Body:
        caller = await self.charged_caller(request)
        query = validate(ReviewQuery, dict(request.query_params))
        with database_errors(JOB_STORE):
            return await review_page(self.jobs, caller.tenant, request.path_params["job_id"], query)

    async def decide_row(self: Handlers, request: Request) -> Body:
        caller = await self.charged_caller(request)
        decision = await read_json(request, DecisionIn, self.config.max_body_bytes, self.pace)
        job_id, row = request.path_params["job_id"], request.path_params["row"]
        with database_errors(JOB_STORE):
            return await decide(self.jobs, caller.tenant, job_id, row, decision, caller.who)

    async def list_confirmations(self: Handlers, request: Request) -> Body:
        caller = await self.charged_caller(request)
        query = validate(ConfirmationQuery, dict(request.query_params))
        with database_errors(CONFIRMATIONS):
            return await _confirmations(self).page(caller.tenant, query)

    async def export_confirmations(self: Handlers, request: Request) -> Response:
        caller = await self.charged_caller(request)
        with database_errors(CONFIRMATIONS):
            every = await _confirmations(self).every(caller.tenant)
        rows = [[str(value) if value is not None else "" for value in item.model_dump().values()] for item in every]
        body = "\ufeff" + csv_text([EXPORT_HEADER, *rows])
        return Response(body, media_type="text/csv; charset=utf-8", headers=attachment("confirmations.csv"))

    async def delete_confirmation(self: Handlers, request: Request) -> Body:
        caller = await self.charged_caller(request)
        raw = request.path_params["confirmation_id"]
        with database_errors(CONFIRMATIONS):
            found = raw.isdigit() and len(raw) < 19 and await _confirmations(self).delete(caller.tenant, int(raw))
        if not found:
            raise e.UnknownConfirmation(f"no confirmation {raw[:20]!r} for this tenant")
        return None


def _confirmations(handlers: Handlers) -> ConfirmationStore:
    store = handlers.service.confirmations
    if store is None:
        raise RuntimeError("this API was built without confirmations")
    return store
