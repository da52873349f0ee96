"""The handlers of the training routes: start a run of an adapter from its tenant's confirmations, follow
it. A mixin of ``api.handlers.Handlers``. A tenant's key allowed the adapter starts and sees its own
tenant's runs; the admin (``Authorization: Bearer``) names the tenant and sees every run."""

from __future__ import annotations

import uuid
from typing import Protocol

from starlette.requests import Request

from serve_app import errors as e
from serve_app.api.body import BodyPace, read_json
from serve_app.api.parts import Api
from serve_app.api.responses import Body, Reply
from serve_app.config import IngressConfig
from serve_app.db.errors import TRAINING_RUNS, database_errors
from serve_app.service.query_service import QueryService
from serve_app.service.tenants import Caller
from serve_app.training.revision import Launcher
from serve_app.training.run_store import TrainingRunIn, TrainingRunStore


class Handlers(Protocol):
    """What these routes use of ``api.handlers.Handlers``."""

    api: Api
    service: QueryService
    config: IngressConfig
    pace: BodyPace

    async def charged_caller(self, request: Request) -> Caller: ...

    async def require_admin(self, request: Request) -> None: ...

    def check_adapter(self, caller: Caller, name: str | None) -> None: ...


class TrainingRoutes:
    async def start_training(self: Handlers, request: Request) -> Reply:
        name = request.path_params["name"]
        body = await read_json(request, TrainingRunIn, self.config.max_body_bytes, self.pace)
        tenant = await _tenant(self, request, name)
        if tenant is None:  # the admin trains for a tenant it names
            if body.tenant is None:
                raise e.InvalidRequest('the admin names the tenant whose confirmations to learn: {"tenant": …}')
            tenant = body.tenant
        elif body.tenant not in (None, tenant):
            raise e.Forbidden("a key trains from its own tenant's confirmations only")
        await self.service.adapter_ref(name)  # UnknownAdapter before anything is queued
        store, launcher = _training(self)
        with database_errors(TRAINING_RUNS):
            run = await store.create(name, tenant, body.steps)
        await launcher.launch(uuid.UUID(run.id))
        return Reply(run, headers={"location": f"/api/v1/adapters/{name}/training/{run.id}"})

    async def list_training(self: Handlers, request: Request) -> Body:
        name = request.path_params["name"]
        tenant = await _tenant(self, request, name)
        with database_errors(TRAINING_RUNS):
            return await _training(self)[0].recent(name, tenant)

    async def training_run(self: Handlers, request: Request) -> Body:
        name = request.path_params["name"]
        tenant = await _tenant(self, request, name)
        with database_errors(TRAINING_RUNS):
            return await _training(self)[0].get(name, request.path_params["run_id"], tenant)


def _training(handlers: Handlers) -> tuple[TrainingRunStore, Launcher]:
    if handlers.config.model_warming:
        raise e.ModelWarming("the model replicas are still starting (the demo model is being built): retry later")
    if handlers.api.training is None:
        raise e.NoModelDeployment("this service runs without model replicas: there is nothing to train")
    return handlers.api.training


async def _tenant(handlers: Handlers, request: Request, adapter: str) -> str | None:
    """The caller's tenant, once it may train ``adapter``; None for the admin (every tenant's runs)."""
    if "authorization" in request.headers:
        await handlers.require_admin(request)
        return None
    caller = await handlers.charged_caller(request)
    handlers.check_adapter(caller, adapter)
    return caller.tenant
