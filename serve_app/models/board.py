"""Per-replica model statistics and the "clear model cache" signal, shared through Redis.

A deployment handle reaches one replica, not all; so each model replica publishes its stats under its
own key (expiring, so dead replicas disappear) and watches a cache epoch that the admin endpoint bumps.
"""

from __future__ import annotations

import json

import redis.asyncio as aioredis

STATS_TTL_S = 15


class ModelBoard:
    def __init__(self, redis: aioredis.Redis, prefix: str = "sa"):
        self.redis = redis
        self._stats_prefix = f"{prefix}:model-stats:"
        self._epoch_key = f"{prefix}:model-cache-epoch"

    async def publish(self, replica_id: str, stats: dict) -> None:
        await self.redis.set(self._stats_prefix + replica_id, json.dumps(stats), ex=STATS_TTL_S)

    async def replicas(self) -> list[dict]:
        keys = sorted([key async for key in self.redis.scan_iter(match=self._stats_prefix + "*", count=100)])
        values = await self.redis.mget(keys) if keys else []
        return [json.loads(value) for value in values if value is not None]

    async def epoch(self) -> int:
        return int(await self.redis.get(self._epoch_key) or 0)

    async def bump_epoch(self) -> int:
        return int(await self.redis.incr(self._epoch_key))
