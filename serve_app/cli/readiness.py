"""Waiting for a local service's ``/readyz``: what ``serve-app up`` does before its first query, and again
while a first run's model replicas join."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable


def wait_for_readyz(
    port: int,
    timeout_s: float,
    accept: Callable[[dict], bool] = lambda ready: True,
    check_alive: Callable[[], None] = lambda: None,
    interval_s: float = 0.5,
) -> float:
    """Seconds until ``/readyz`` on 127.0.0.1:``port`` answers 200 with a body ``accept`` takes;
    ``check_alive`` raises to stop early (the server exited); ``TimeoutError`` past ``timeout_s``."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        check_alive()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                if response.status == 200 and accept(json.loads(response.read())):
                    return time.perf_counter() - started
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(interval_s)
    raise TimeoutError(f"not ready after {timeout_s:.0f}s")
