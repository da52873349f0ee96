"""What a deployment handle raises when no replica can take or finish a call, in the domain's terms."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from serve_app.errors import DependencyTimeout, ModelUnavailable, Overloaded, unavailable
from serve_app.schemas import ExtractionOutcome

#: The replica died mid-call, is unreachable, or the deployment has none: retrying later may succeed.
REPLICA_UNAVAILABLE = (RayActorError, ActorUnavailableError, DeploymentUnavailableError)


@contextmanager
def domain_errors(what: str, model_replicas: bool = False) -> Iterator[None]:
    """Ray's handle failures inside the block as domain errors: back-pressure is ``Overloaded``; a replica
    gone is ``ModelUnavailable`` (``model_replicas``) or ``DependencyUnavailable`` naming ``what``. Errors the
    replica raised itself (``ServiceError``s) pass through unchanged: Ray re-raises them as their class."""
    try:
        yield
    except BackPressureError as exc:
        raise Overloaded("the service is at capacity; retry shortly") from exc
    except REPLICA_UNAVAILABLE as exc:
        if model_replicas:
            raise ModelUnavailable(f"no replica of {what} could answer; retry shortly") from exc
        raise unavailable(what) from exc


class ExtractorCall:
    """``ExtractEntities`` over the EntityExtractor deployment, bounded by ``timeout_s()`` (read per call,
    so live tunables apply): past it, ``DependencyTimeout``; cancelling the call cancels the Serve request."""

    def __init__(self, handle: DeploymentHandle, timeout_s: Callable[[], float]):
        self.handle = handle
        self.timeout_s = timeout_s

    async def __call__(self, normalized: str, adapter: str | None, data_version: int | None) -> ExtractionOutcome:
        timeout_s = self.timeout_s()
        try:
            async with asyncio.timeout(timeout_s):
                with domain_errors("entity extraction"):
                    outcome = await self.handle.extract_entities.remote(normalized, adapter, data_version)
        except TimeoutError as exc:
            raise DependencyTimeout(f"extraction did not finish within {timeout_s:g} s; retry shortly") from exc
        return ExtractionOutcome.model_validate(outcome)
