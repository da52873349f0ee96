"""Per-client rate limits: a token bucket in Redis, shared by every ingress replica.

One Lua script refills and takes a token atomically. Without Redis the limiter fails open (requests
pass, ``errors`` counts): a cache outage must not become a service outage.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV: rate per second, burst, now (s), cost. Returns {allowed, retry_after_ms}.
_BUCKET_SCRIPT = """
local rate, burst, now, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait_ms = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, wait_ms}
"""


@dataclass
class RateLimitStats:
    allowed: int = 0
    rejected: int = 0
    errors: int = 0


class RateLimiter:
    def __init__(self, redis: aioredis.Redis | None, rate_per_s: float, burst: int, prefix: str = "sa"):
        self.redis = redis
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.prefix = prefix
        self.stats = RateLimitStats()
        self._script = redis.register_script(_BUCKET_SCRIPT) if redis is not None else None

    async def check(self, client: str, rate_per_s: float | None = None, cost: int = 1) -> float | None:
        """None if the request may proceed, else the seconds to wait before retrying. ``rate_per_s``
        overrides the default rate (a tenant's own), its burst scaled to match; ``cost`` tokens are taken
        (at most a full burst, so a large request is slow, never impossible)."""
        rate = rate_per_s or self.rate_per_s
        burst = self.burst if rate_per_s is None else max(1, math.ceil(self.burst * rate_per_s / self.rate_per_s))
        cost = max(1, min(cost, burst))
        if self._script is None:
            self.stats.allowed += 1
            return None
        key = f"{self.prefix}:rl:{hashlib.sha256(client.encode()).hexdigest()[:24]}"
        try:
            allowed, wait_ms = await self._script(keys=[key], args=[rate, burst, time.time(), cost])
        except (RedisError, OSError) as exc:
            self.stats.errors += 1
            log.warning("rate limiter unavailable, letting the request through: %s", exc)
            self.stats.allowed += 1
            return None
        if allowed:
            self.stats.allowed += 1
            return None
        self.stats.rejected += 1
        return max(math.ceil(int(wait_ms) / 1000), 1)
