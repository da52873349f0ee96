"""Which adapters are resident in an engine: an LRU bound, one load at a time per adapter, and counters.

This is the replica-level policy for running without Ray (CLI, tests, benchmarks). Under Ray Serve the
same role is played by ``@serve.multiplexed(max_num_models_per_replica=K)``, which calls ``load`` and
``evict`` here with a capacity it enforces itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from serve_app.models.engine import AdapterSpec, Engine


@dataclass
class AdapterCacheStats:
    loads: int = 0
    hits: int = 0
    evictions: int = 0
    failures: int = 0
    load_seconds: dict[str, float] = field(default_factory=dict)


class AdapterCache:
    def __init__(self, engine: Engine, capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.engine = engine
        self.capacity = capacity
        self.stats = AdapterCacheStats()
        self._resident: OrderedDict[str, AdapterSpec] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._evict_lock = asyncio.Lock()

    @property
    def resident(self) -> list[str]:
        """Adapter names, coldest first."""
        return list(self._resident)

    async def acquire(self, spec: AdapterSpec) -> None:
        """Ensure ``spec`` is loaded (loading it at most once however many callers ask) and mark it hot."""
        if spec.name in self._resident:
            self._resident.move_to_end(spec.name)
            self.stats.hits += 1
            return
        lock = self._locks.setdefault(spec.name, asyncio.Lock())
        async with lock:
            if spec.name in self._resident:  # loaded by the caller we waited for
                self._resident.move_to_end(spec.name)
                self.stats.hits += 1
                return
            await self._make_room()
            started = time.perf_counter()
            try:
                await self.engine.load_adapter(spec)
            except Exception:
                self.stats.failures += 1
                raise
            self.stats.load_seconds[spec.name] = round(time.perf_counter() - started, 4)
            self.stats.loads += 1
            self._resident[spec.name] = spec

    async def evict(self, name: str) -> None:
        if self._resident.pop(name, None) is not None:
            await self.engine.unload_adapter(name)
            self.stats.evictions += 1

    async def clear(self) -> None:
        for name in list(self._resident):
            await self.evict(name)

    async def _make_room(self) -> None:
        async with self._evict_lock:
            while len(self._resident) >= self.capacity:
                coldest = next(iter(self._resident))
                await self.evict(coldest)
