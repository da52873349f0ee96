"""Tenants and their API keys: who is calling, which adapters it may name, what rate it gets.

A key is ``sak_<id>_<secret>`` with 32 random bytes of secret; PostgreSQL stores its id (to list and
revoke it by) and the SHA-256 of the whole key, never the key. Each ingress replica remembers a key's
answer for ``KEY_CACHE_TTL_S``, so a revocation takes effect everywhere within that time.

In ``open`` mode (the local demo) there are no keys: every caller is the tenant ``open``, may name any
adapter, and is rate-limited by its address — a header it makes up cannot buy it a new bucket.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from pydantic import BaseModel

from serve_app.errors import Forbidden, Unauthorized

KEY_CACHE_TTL_S = 2.0
KEY_PREFIX = "sak_"
#: Every key ``create`` makes: the prefix, 8 hex digits (its id), 43 URL-safe characters.
KEY_SHAPE = re.compile(r"^sak_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$")
REFUSED_KEYS_REMEMBERED = 4096
TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
OPEN_TENANT = "open"


@dataclass(frozen=True)
class Caller:
    """Who a request is from. ``adapters`` None: any adapter (open mode)."""

    tenant: str
    rate_key: str  # the rate limiter's bucket
    adapters: frozenset[str] | None = None
    rate_per_s: float | None = None  # None: the service's default
    who: str = OPEN_TENANT  # the person or program behind the key, as decisions record it: its label, else its id

    def check_adapter(self, name: str | None) -> None:
        """``Forbidden`` if this caller may not name adapter ``name``."""
        if name is not None and self.adapters is not None and name not in self.adapters:
            raise Forbidden(f"this API key may not use adapter {name!r}")


class ApiKeyOut(BaseModel):
    id: str
    tenant: str
    label: str | None
    adapters: list[str]
    rate_per_s: float | None
    created_at: datetime
    revoked_at: datetime | None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    def __init__(self, pool: asyncpg.Pool, cache_ttl_s: float = KEY_CACHE_TTL_S):
        self.pool = pool
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[float, Caller]] = {}  # bounded by the keys that exist
        self._refused: OrderedDict[str, float] = OrderedDict()

    async def create(
        self, tenant: str, adapters: list[str], rate_per_s: float | None, label: str | None = None
    ) -> tuple[str, ApiKeyOut]:
        """A new key for ``tenant``: (the key, shown once; its record). ``label`` names who holds it (a person
        or a program, 1-64 characters): decisions made with the key are recorded under it."""
        if label is not None and not 1 <= len(label) <= 64:
            raise ValueError("a key's label is 1-64 characters")
        if not TENANT_NAME.fullmatch(tenant):
            raise ValueError("tenant names are 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
        key_id = secrets.token_hex(4)
        key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        row = await self.pool.fetchrow(
            """INSERT INTO api_keys (id, key_hash, tenant, adapters, rate_per_s, label) VALUES ($1, $2, $3, $4, $5, $6)
               RETURNING id, tenant, label, adapters, rate_per_s, created_at, revoked_at""",
            key_id,
            _hash(key),
            tenant,
            sorted(set(adapters)),
            rate_per_s,
            label,
        )
        return key, ApiKeyOut.model_validate(dict(row))

    async def list(self) -> list[ApiKeyOut]:
        rows = await self.pool.fetch(
            """SELECT id, tenant, label, adapters, rate_per_s, created_at, revoked_at FROM api_keys
               ORDER BY tenant, created_at"""
        )
        return [ApiKeyOut.model_validate(dict(row)) for row in rows]

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key by its id; False when no live key has that id."""
        revoked = await self.pool.fetchval(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING id", key_id
        )
        return revoked is not None

    async def caller(self, key: str | None) -> Caller:
        """The caller a key belongs to; ``Unauthorized`` for a missing, malformed, unknown or revoked key.

        A malformed key costs no query. Valid and refused keys are remembered apart (``cache_ttl_s``), and
        refused ones in a bounded LRU: a flood of made-up keys never pushes a real one out of the cache."""
        if not key:
            raise Unauthorized("an API key is required (X-API-Key)")
        if not KEY_SHAPE.fullmatch(key):
            raise Unauthorized("unknown or revoked API key")
        digest = _hash(key)
        now = time.monotonic()
        known = self._cache.get(digest)
        if known is not None and now - known[0] < self.cache_ttl_s:
            return known[1]
        refused = self._refused.get(digest)
        if refused is not None and now - refused < self.cache_ttl_s:
            raise Unauthorized("unknown or revoked API key")
        row = await self.pool.fetchrow(
            """SELECT id, tenant, label, adapters, rate_per_s FROM api_keys
               WHERE key_hash = $1 AND revoked_at IS NULL""",
            digest,
        )
        if row is None:
            self._refused[digest] = now
            self._refused.move_to_end(digest)
            while len(self._refused) > REFUSED_KEYS_REMEMBERED:
                self._refused.popitem(last=False)
            self._cache.pop(digest, None)
            raise Unauthorized("unknown or revoked API key")
        caller = Caller(
            tenant=row["tenant"],
            rate_key=f"tenant:{row['tenant']}",
            adapters=frozenset(row["adapters"]),
            rate_per_s=row["rate_per_s"],
            who=row["label"] or f"key {row['id']}",
        )
        self._cache[digest] = (now, caller)
        return caller


def is_loopback(host: str) -> bool:
    """Whether a client address is this machine (127.0.0.0/8, ::1); names and garbage are not."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_caller(client_address: str) -> Caller:
    return Caller(tenant=OPEN_TENANT, rate_key=f"ip:{client_address}")
