"""What a deployment handle raises when no replica can take or finish a call (shared by the shims)."""

from __future__ import annotations

from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import DeploymentUnavailableError

#: The replica died mid-call, is unreachable, or the deployment has none: retrying later may succeed.
REPLICA_UNAVAILABLE = (RayActorError, ActorUnavailableError, DeploymentUnavailableError)
