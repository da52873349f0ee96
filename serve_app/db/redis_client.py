"""redis.asyncio clients over a ``BlockingConnectionPool``, one per process (replica).

redis-py's default async pool raises ``MaxConnectionsError`` once its limit is reached; a blocking pool
makes callers wait (up to the timeout) instead, which is what bursts of concurrent requests need.

A pooled connection outlives a Redis restart only as a dead socket, and a client given its own pool
does not retry by default; so a command that finds its connection closed is retried once, at once, on a
fresh connection. Timeouts are not retried: a slow Redis must not cost twice the timeout.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from serve_app.settings import Settings


def create_redis(redis_url: str, settings: Settings | None = None) -> aioredis.Redis:
    settings = settings or Settings()
    pool = aioredis.BlockingConnectionPool.from_url(
        redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry=Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
    )
    return aioredis.Redis(connection_pool=pool)
