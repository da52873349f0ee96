"""Milliseconds since a ``time.perf_counter()`` mark, as every ``timings_ms`` entry is written."""

from __future__ import annotations

import time


def ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
