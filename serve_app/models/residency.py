"""Which adapters an engine holds: the one path an adapter is loaded by, and the one set of counters.

An adapter is named by its ref, ``name@revision`` (see ``AdapterOut.ref``); the engine holds it under that
ref, so new weights registered under an old name are a different adapter and never answered with the old
ones. Loading goes registry → ``ModelPaths.validate`` → engine, at most once at a time per ref.

Adapters a batch is using are pinned (``using``): a release that arrives meanwhile (Serve's multiplexer
evicting it, a cache clear, a newer revision) is deferred until the batch is done, so no unload can pull an
adapter out from under ``generate``; a request for it in between cancels the deferred unload.

``capacity`` bounds residency here (LRU) when nothing else does (CLI, tests, benchmarks). Under Ray Serve
the multiplexer bounds it and calls ``release``; the residency then runs with ``capacity=None``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

from serve_app.errors import AdapterNotLoaded, UnknownAdapter
from serve_app.models.adapters import AdapterOut, AdapterRegistry, parse_adapter_ref
from serve_app.models.engine import Engine
from serve_app.models.paths import ModelPaths
from serve_app.models.task import AnswerFormat, format_for

log = logging.getLogger(__name__)


class KeyedLocks:
    """One ``asyncio.Lock`` per key, kept only while someone holds or waits for it (so the table stays as
    small as the work in progress, however many refs come and go)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, holders = self._entries.setdefault(key, (asyncio.Lock(), [0]))
        holders[0] += 1
        try:
            async with lock:
                yield
        finally:
            holders[0] -= 1
            if holders[0] == 0:
                del self._entries[key]


@dataclass
class AdapterStats:
    """``hits``: requests whose adapter was already held (counted by ``ModelWorker.read``, once per request)."""

    loads: int = 0
    hits: int = 0
    evictions: int = 0
    failures: int = 0
    load_seconds: dict[str, float] = field(default_factory=dict)


class AdapterResidency:
    def __init__(
        self,
        engine: Engine,
        registry: AdapterRegistry,
        paths: ModelPaths,
        capacity: int | None = None,
        on_event: Callable[[str, str, float | None], None] | None = None,
    ):
        if capacity is not None and capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.engine = engine
        self.registry = registry
        self.paths = paths
        self.capacity = capacity
        self.on_event = on_event  # observer (metrics): ("load" | "evict", adapter name, load seconds)
        self.stats = AdapterStats()
        # refs, coldest first → the answer format each adapter was trained for
        self._resident: OrderedDict[str, AnswerFormat] = OrderedDict()
        self._locks = KeyedLocks()
        self._users: Counter[str] = Counter()
        self._deferred: set[str] = set()

    @property
    def resident(self) -> list[str]:
        """Adapter refs the engine holds, coldest first."""
        return list(self._resident)

    def holds(self, ref: str) -> bool:
        return ref in self._resident

    def answer_format(self, ref: str) -> AnswerFormat:
        """The answer format of the resident adapter held by ``ref`` (ask right after ``acquire``)."""
        try:
            return self._resident[ref]
        except KeyError:
            raise AdapterNotLoaded(f"adapter {ref} is not resident") from None

    async def resolve(self, adapter: str) -> str:
        """The ref ``adapter`` (a name or a ref) is served by: itself when held, else the registry's current
        revision of the name; ``UnknownAdapter`` when the name is not registered."""
        if adapter in self._resident:
            return adapter
        return (await self._registered(adapter)).ref

    async def _registered(self, adapter: str) -> AdapterOut:
        name, _ = parse_adapter_ref(adapter)
        record = await self.registry.get(name)
        if record is None:
            raise UnknownAdapter.named(name)
        return record

    async def acquire(self, adapter: str) -> str:
        """Ensure ``adapter`` (a ref, or a bare name) is loaded, mark it hot, and return the ref it is held by.

        A ref the engine holds costs no registry lookup. Otherwise the registry's current revision of the
        name is loaded (a stale ref asks for the current weights); ``UnknownAdapter`` if the name is not
        registered (never was, or was deleted), ``AdapterInvalid`` if its folder is unusable."""
        if adapter in self._resident:
            return self._touch(adapter)
        record = await self._registered(adapter)
        ref, name = record.ref, record.name
        async with self._locks.hold(ref):
            if ref in self._resident:  # loaded by the caller we waited for
                return self._touch(ref)
            await self._enforce_capacity(room_for=1)
            started = time.perf_counter()
            try:
                spec = await asyncio.to_thread(self.paths.validate, name, record.path)
                await self.engine.load_adapter(replace(spec, name=ref))  # held per revision
            except Exception:
                self.stats.failures += 1
                raise
            seconds = self.stats.load_seconds[ref] = round(time.perf_counter() - started, 4)
            self.stats.loads += 1
            self._resident[ref] = format_for(spec)
            self._notify("load", name, seconds)
        await self._retire_older_revisions(ref)
        return ref

    def _touch(self, ref: str) -> str:
        self._deferred.discard(ref)  # asked for again: a deferred unload is cancelled
        self._resident.move_to_end(ref)
        return ref

    async def release(self, ref: str) -> None:
        """Unload ``ref`` now, or once the batches using it are done."""
        async with self._locks.hold(ref):
            if self._users[ref] > 0:
                self._deferred.add(ref)
                return
            if ref not in self._resident:
                return
            del self._resident[ref]
            await self.engine.unload_adapter(ref)
            self.stats.evictions += 1
            self._notify("evict", parse_adapter_ref(ref)[0], None)

    def _notify(self, event: str, name: str, seconds: float | None) -> None:
        if self.on_event is not None:
            self.on_event(event, name, seconds)

    @asynccontextmanager
    async def using(self, refs: Iterable[str]) -> AsyncIterator[None]:
        """Pin ``refs`` for the duration of the block (see the module docstring)."""
        pinned = list(dict.fromkeys(refs))
        self._users.update(pinned)
        try:
            yield
        finally:
            self._users.subtract(pinned)
            for ref in pinned:
                if self._users[ref] <= 0 and ref in self._deferred:
                    self._deferred.discard(ref)
                    await self.release(ref)
            await self._enforce_capacity(room_for=0)

    async def clear(self) -> None:
        for ref in self.resident:
            await self.release(ref)

    async def _enforce_capacity(self, room_for: int) -> None:
        """Unload the coldest unpinned adapters until ``room_for`` more fit. Pinned ones stay (the bound
        is exceeded while their batches run) and are unloaded here when the last of those batches ends."""
        if self.capacity is None:
            return
        for ref in self.resident:
            if len(self._resident) + room_for <= self.capacity:
                return
            if self._users[ref] <= 0:
                await self.release(ref)

    async def _retire_older_revisions(self, ref: str) -> None:
        name, revision = parse_adapter_ref(ref)
        for other in self.resident:
            other_name, other_revision = parse_adapter_ref(other)
            if other_name == name and other_revision != revision:
                log.info("adapter %s re-registered: unloading revision %s", name, other_revision)
                await self.release(other)
