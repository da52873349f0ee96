"""Extractions cached in Redis, shared by every replica and process.

Keys carry everything the value depends on: the normalizer and extractor versions and the directory's
data version (the vocabulary and its priors come from the directory). Redis trouble is never the
caller's problem: a failed read is a miss, a failed write is skipped, and both are counted.
"""

from __future__ import annotations

import hashlib
import logging

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from serve_app.extraction.rules import EXTRACTOR_VERSION
from serve_app.normalize import NORMALIZER_VERSION
from serve_app.schemas import Extraction

log = logging.getLogger(__name__)


class ExtractionCache:
    def __init__(self, redis: aioredis.Redis, data_version: int, ttl_s: int = 7 * 24 * 3600, prefix: str = "sa"):
        self.redis = redis
        self.ttl_s = ttl_s
        self._prefix = f"{prefix}:extract:n{NORMALIZER_VERSION}:x{EXTRACTOR_VERSION}:d{data_version}:"
        self.hits = self.misses = self.errors = 0

    def key(self, normalized: str) -> str:
        return self._prefix + hashlib.sha256(normalized.encode()).hexdigest()[:32]

    async def get(self, normalized: str) -> Extraction | None:
        try:
            raw = await self.redis.get(self.key(normalized))
        except (RedisError, OSError) as exc:
            self.errors += 1
            log.warning("extraction cache read failed: %s", exc)
            return None
        if raw is None:
            self.misses += 1
            return None
        try:
            extraction = Extraction.model_validate_json(raw)
        except ValidationError:
            self.misses += 1
            return None
        self.hits += 1
        return extraction

    async def put(self, normalized: str, extraction: Extraction) -> None:
        try:
            await self.redis.set(self.key(normalized), extraction.model_dump_json(), ex=self.ttl_s)
        except (RedisError, OSError) as exc:
            self.errors += 1
            log.warning("extraction cache write failed: %s", exc)
