"""Query results cached in two tiers — an in-process LRU in front of Redis — with single-flight.

A key is derived from the answer's ``AnswerInputs`` — everything the answer is computed from, the code
written in the text included — and from the normalizer, extractor and verdict versions, so a reload or a
new extractor never serves stale answers and no two inputs that deserve different answers share an
entry. ``KEY_SCHEMA`` names the key's layout: changing it leaves every entry written before unread. An
answer whose optional model reading was skipped (``MODEL_SKIPPED``: the model was busy) is not stored.
Identical concurrent queries in one process are computed once. Redis being down costs only the shared
tier: reads miss, writes are skipped, the ``redis_up`` flag and error count say so, and the next
successful call flips it back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from serve_app.extraction.model_use import MODEL_SKIPPED
from serve_app.extraction.rules import EXTRACTOR_VERSION
from serve_app.normalize import NORMALIZER_VERSION
from serve_app.query.inputs import AnswerInputs
from serve_app.query.verdict import VERDICT_VERSION
from serve_app.schemas import QueryResult
from serve_app.timing import ms_since

log = logging.getLogger(__name__)
#: The layout of a key and of what it digests. Bumped from 1 (normalized text, adapter, top_k, version)
#: when the code written in the text joined the key: entries that ignored it are never read again.
KEY_SCHEMA = 2


@dataclass
class CacheStats:
    local_hits: int = 0
    redis_hits: int = 0
    misses: int = 0
    coalesced: int = 0
    redis_errors: int = 0
    redis_up: bool = True


class ResultCache:
    def __init__(self, redis: aioredis.Redis | None, ttl_s: int, local_size: int, prefix: str = "sa"):
        self.redis = redis
        self.ttl_s = ttl_s
        self.local_size = local_size
        self.prefix = prefix
        self.stats = CacheStats()
        self._local: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[tuple[QueryResult, bool]]] = {}

    def key(self, inputs: AnswerInputs) -> str:
        """The entry of the answer computed from ``inputs``: equal keys for equal inputs and code versions
        (and only for those, up to a 128-bit digest)."""
        digest = hashlib.sha256(inputs.model_dump_json().encode()).hexdigest()[:32]
        return (
            f"{self.prefix}:result{KEY_SCHEMA}:d{inputs.data_version}:n{NORMALIZER_VERSION}:x{EXTRACTOR_VERSION}:"
            f"v{VERDICT_VERSION}:{digest}"
        )

    async def get_or_compute(
        self, key: str, compute: Callable[[], Awaitable[QueryResult]], timings: dict[str, float] | None = None
    ) -> tuple[QueryResult, bool]:
        """The cached result (and True), or ``compute()``'s (and False), looked up and computed once per key
        at a time. ``timings`` receives the shared tier's ``cache_lookup`` and ``cache_write`` milliseconds
        when this caller starts the flight.

        The single flight covers the Redis lookup as well as the computation, and a flight ends only after
        its result is stored, so there is no moment at which a caller can miss both the stored result and
        the flight. The flight runs as its own task: a caller that gives up (its client went away) stops
        waiting without cancelling it for the callers still waiting; its result is cached all the same."""
        cached = self._get_local(key)
        if cached is not None:
            return cached, True
        flight = self._inflight.get(key)
        if flight is not None:
            self.stats.coalesced += 1
        else:
            flight = self._inflight[key] = asyncio.get_running_loop().create_task(
                self._fetch_or_compute(key, compute, {} if timings is None else timings)
            )
            flight.add_done_callback(_retrieve)  # a failure nobody waited for is not an "unretrieved" error
        return await asyncio.shield(flight)

    async def _fetch_or_compute(
        self, key: str, compute: Callable[[], Awaitable[QueryResult]], timings: dict[str, float]
    ) -> tuple[QueryResult, bool]:
        try:
            mark = time.perf_counter()
            cached = await self._get_shared(key)
            timings["cache_lookup"] = ms_since(mark)
            if cached is not None:
                return cached, True
            self.stats.misses += 1
            result = await compute()
            if result.model_error == MODEL_SKIPPED:
                return result, False  # the model was busy: the next identical query asks it again
            mark = time.perf_counter()
            await self._put(key, result)
            timings["cache_write"] = ms_since(mark)
            return result, False
        finally:
            self._inflight.pop(key, None)

    def _get_local(self, key: str) -> QueryResult | None:
        entry = self._local.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return None
        self._local.move_to_end(key)
        self.stats.local_hits += 1
        return QueryResult.model_validate_json(entry[1])

    async def _get_shared(self, key: str) -> QueryResult | None:
        if self.redis is None:
            return None
        try:
            raw = await self.redis.get(key)
            self._redis_ok()
        except (RedisError, OSError) as exc:
            self._redis_failed(exc)
            return None
        if raw is None:
            return None
        self.stats.redis_hits += 1
        payload = raw.decode() if isinstance(raw, bytes) else raw
        self._remember(key, payload)
        return QueryResult.model_validate_json(payload)

    async def _put(self, key: str, result: QueryResult) -> None:
        payload = result.model_dump_json()
        self._remember(key, payload)
        if self.redis is None:
            return
        try:
            await self.redis.set(key, payload, ex=self.ttl_s)
            self._redis_ok()
        except (RedisError, OSError) as exc:
            self._redis_failed(exc)

    def _remember(self, key: str, payload: str) -> None:
        if self.local_size == 0:
            return
        self._local[key] = (time.monotonic() + self.ttl_s, payload)
        self._local.move_to_end(key)
        while len(self._local) > self.local_size:
            self._local.popitem(last=False)

    def clear_local(self) -> None:
        self._local.clear()

    def _redis_ok(self) -> None:
        if not self.stats.redis_up:
            log.info("Redis is back: shared result cache resumed")
        self.stats.redis_up = True

    def _redis_failed(self, exc: Exception) -> None:
        if self.stats.redis_up:
            log.warning("Redis unavailable, answering without the shared cache: %s", exc)
        self.stats.redis_up = False
        self.stats.redis_errors += 1


def _retrieve(task: asyncio.Task[tuple[QueryResult, bool]]) -> None:
    if not task.cancelled():
        task.exception()
