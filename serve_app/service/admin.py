"""The admin API's logic: adapters, model statistics, the model-cache signal, readiness. No Ray.

The Ingress deployment builds one per replica. What only Serve can do (a health call on a model
replica) comes in as ``check_models``, already speaking the domain's errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from serve_app.db.errors import ADAPTER_REGISTRY, database_errors
from serve_app.errors import NoModelDeployment, NotReady, Overloaded, ServiceError, UnknownAdapter, unavailable
from serve_app.models.adapters import AdapterIn, AdapterOut, AdapterRegistry
from serve_app.models.board import ModelBoard
from serve_app.models.paths import ModelPaths

#: The longest a readiness probe waits for a model replica's health check.
MODEL_HEALTH_TIMEOUT_S = 2.0


class AdminService:
    def __init__(
        self,
        registry: AdapterRegistry,
        board: ModelBoard,
        paths: ModelPaths | None,
        check_models: Callable[[], Awaitable[None]] | None,
    ):
        self.registry = registry
        self.board = board
        self.paths = paths  # None: the application runs without model replicas
        self.check_models = check_models

    async def model_cache_stats(self) -> dict[str, Any]:
        try:
            replicas = await self.board.replicas()
        except (RedisError, OSError) as exc:
            raise unavailable("model statistics (Redis)") from exc
        return {"replicas": replicas, "model_deployment": self.paths is not None}

    async def clear_model_cache(self) -> dict[str, Any]:
        try:
            epoch = await self.board.bump_epoch()
        except (RedisError, OSError) as exc:
            raise unavailable("the model cache signal (Redis)") from exc
        return {"cleared": True, "epoch": epoch, "note": "model replicas unload their adapters within ~1 s"}

    async def model_state(self) -> str:
        """``ready`` when a model replica passed its health check within the bound; ``busy`` when every
        model replica's queue is full (they are up, and the router says so at once); ``none`` without model
        replicas. ``NotReady`` otherwise: warming up, unhealthy, gone, or too slow to answer."""
        if self.check_models is None:
            return "none"
        try:
            async with asyncio.timeout(MODEL_HEALTH_TIMEOUT_S):
                await self.check_models()
        except TimeoutError as exc:
            raise NotReady(f"no model replica answered a health check within {MODEL_HEALTH_TIMEOUT_S:g} s") from exc
        except Overloaded:
            return "busy"
        except ServiceError as exc:
            raise NotReady(f"model replicas are not ready: {exc.message}") from exc
        except Exception as exc:
            raise NotReady(f"model replicas are not ready: {type(exc).__name__}") from exc
        return "ready"

    async def list_adapters(self) -> list[AdapterOut]:
        with database_errors(ADAPTER_REGISTRY):
            return await self.registry.list()

    async def register_adapter(self, adapter: AdapterIn) -> AdapterOut:
        """Validate the folder against the resident base (aliases included) and register it:
        ``AdapterInvalid`` (422), ``AdapterExists`` (409), ``NoModelDeployment`` (422)."""
        if self.paths is None:
            raise NoModelDeployment("this application runs without model replicas")
        spec = await asyncio.to_thread(self.paths.validate, adapter.name, adapter.path)
        with database_errors(ADAPTER_REGISTRY):
            return await self.registry.register(spec, adapter.path)

    async def delete_adapter(self, name: str) -> None:
        with database_errors(ADAPTER_REGISTRY):
            deleted = await self.registry.delete(name)
        if not deleted:
            raise UnknownAdapter.named(name)
