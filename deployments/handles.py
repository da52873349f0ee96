"""What a deployment handle raises when no replica can take or finish a call, in the domain's terms."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from serve_app.errors import ModelUnavailable, Overloaded, unavailable

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
