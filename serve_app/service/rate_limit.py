"""Per-client rate limits: a token bucket in Redis, shared by every ingress replica, spent in leases.

One Lua script refills the bucket and takes tokens atomically. A replica takes a client's tokens a
*lease* at a time and spends them locally, so a busy client costs one Redis round trip per lease, not per
request. A lease starts at one token (an occasional client is limited exactly as by the bucket alone),
doubles while the client spends each lease within ``LEASE_TTL_S``, halves when one lapses unspent, and is
at most ``LEASE_SHARE`` of the burst (``MAX_LEASE`` tokens). Every admitted request spent a token taken
from the shared bucket, so a client is never admitted more than its bucket allows; what a lapsed lease
held is lost, so across ``n`` replicas a client may be refused up to ``n`` leases early.

Without Redis the limiter fails open (requests pass, ``errors`` counts): a cache outage must not become a
service outage.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

#: Seconds a leased token may wait in a replica before it lapses.
LEASE_TTL_S = 1.0
#: A lease is at most this share of the client's burst, and at most MAX_LEASE tokens.
LEASE_SHARE = 0.05
MAX_LEASE = 64
#: Clients whose lease a replica remembers (least recently seen forgotten first).
MAX_CLIENTS = 10_000

# KEYS[1] bucket; ARGV: rate per second, burst, now (s), cost, wanted (>= cost). Takes `wanted` tokens, or
# as many whole tokens as there are if fewer, or none if fewer than `cost`. Returns {taken, retry_after_ms}.
_BUCKET_SCRIPT = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cost, wanted = tonumber(ARGV[4]), tonumber(ARGV[5])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = 0
local wait_ms = 0
if tokens >= cost then
  taken = math.max(cost, math.min(wanted, math.floor(tokens)))
  tokens = tokens - taken
else
  wait_ms = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {taken, wait_ms}
"""


@dataclass
class RateLimitStats:
    allowed: int = 0
    rejected: int = 0
    errors: int = 0
    leases: int = 0  # Redis round trips that took tokens


@dataclass
class _Lease:
    """Tokens of one client held by this replica."""

    tokens: int = 0
    expires: float = 0.0  # time.monotonic()
    size: int = 1  # what the next lease asks for


class RateLimiter:
    def __init__(self, redis: aioredis.Redis | None, rate_per_s: float, burst: int, prefix: str = "sa"):
        self.redis = redis
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.prefix = prefix
        self.stats = RateLimitStats()
        self._script = redis.register_script(_BUCKET_SCRIPT) if redis is not None else None
        self._leases: OrderedDict[str, _Lease] = OrderedDict()

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
        lease = self._lease(key)
        now = time.monotonic()
        held = lease.tokens if now < lease.expires else 0
        if held >= cost:
            lease.tokens -= cost
            self.stats.allowed += 1
            return None
        if held == 0 and lease.tokens > 0:  # the last lease lapsed unspent: smaller ones for this client
            lease.size = max(1, lease.size // 2)
        elif now < lease.expires:  # spent within its time: larger ones
            lease.size *= 2
        lease.size = min(lease.size, max(1, int(burst * LEASE_SHARE)), MAX_LEASE)
        lease.tokens = 0  # what is held goes towards this request
        need = cost - held
        try:
            wanted = max(need, lease.size)
            taken, wait_ms = await self._script(keys=[key], args=[rate, burst, time.time(), need, wanted])
        except (RedisError, OSError) as exc:
            self.stats.errors += 1
            log.warning("rate limiter unavailable, letting the request through: %s", exc)
            self.stats.allowed += 1
            return None
        self.stats.leases += 1
        if int(taken) < need:
            lease.tokens += held
            self.stats.rejected += 1
            return max(math.ceil(int(wait_ms) / 1000), 1)
        lease.tokens += int(taken) - need  # other requests of this client may have added to it meanwhile
        lease.expires = time.monotonic() + LEASE_TTL_S
        self.stats.allowed += 1
        return None

    def _lease(self, key: str) -> _Lease:
        lease = self._leases.get(key)
        if lease is None:
            lease = self._leases[key] = _Lease()
            while len(self._leases) > MAX_CLIENTS:
                self._leases.popitem(last=False)
        else:
            self._leases.move_to_end(key)
        return lease
