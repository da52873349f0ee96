"""Process settings read from the environment (``SERVE_APP_*``), validated once.

These say *where things are* (URLs, folders, secrets). How the Serve application is shaped (replicas,
batching, thresholds) lives in the app config tree, not here.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    """The per-user data folder: embedded databases, models, logs."""
    return Path(platformdirs.user_data_dir("serve-app", appauthor=False))


#: The admin token guards adapters, model caches and every replica's counters.
MIN_ADMIN_TOKEN_CHARS = 24
PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me", "placeholder", "example", "your-token", "xxxxxxxx")
TOKEN_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105 - a hint, not a token


class Settings(BaseSettings):
    """Environment settings. Unknown ``SERVE_APP_*`` variables are ignored; bad values fail fast."""

    model_config = SettingsConfigDict(env_prefix="SERVE_APP_", extra="ignore", frozen=True)

    home: Path = Field(default_factory=default_home, description="Data folder for embedded services.")
    database_url: str | None = Field(
        default=None, description="postgresql:// URL. Unset: an embedded PostgreSQL under `home`."
    )
    redis_url: str | None = Field(
        default=None, description="redis:// URL. Unset: an embedded Valkey server under `home`."
    )
    admin_token: SecretStr | None = Field(default=None, description="Bearer token for admin endpoints.")
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=10, ge=1)
    db_statement_timeout_ms: int = Field(default=2000, ge=1)
    db_connect_timeout_s: float = Field(default=5.0, gt=0)
    db_acquire_timeout_s: float = Field(
        default=2.0, gt=0, description="Longest wait for a pooled connection (opening one included), then 504."
    )
    redis_max_connections: int = Field(default=64, ge=1)
    redis_timeout_s: float = Field(default=0.5, gt=0)

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("SERVE_APP_DATABASE_URL must start with postgresql://")
        if value is not None and any(f":{word}@" in value.casefold() for word in PLACEHOLDER_WORDS):
            raise ValueError("SERVE_APP_DATABASE_URL carries a placeholder password: set the real one")
        return value

    @field_validator("admin_token")
    @classmethod
    def _strong_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        """A placeholder or short token is refused at start, not discovered after a breach."""
        if value is None:
            return None
        token = value.get_secret_value()
        if any(word in token.casefold() for word in PLACEHOLDER_WORDS):
            raise ValueError("SERVE_APP_ADMIN_TOKEN is a placeholder: set a random one (" + TOKEN_HINT + ")")
        if len(token) < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(
                f"SERVE_APP_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_CHARS} characters (" + TOKEN_HINT + ")"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("SERVE_APP_REDIS_URL must start with redis://, rediss:// or unix://")
        return value

    @classmethod
    def for_replica(cls) -> ReplicaSettings:
        """Settings inside a Serve replica, where the URLs must be set (``serve-app up`` sets them)."""
        return ReplicaSettings()

    @cached_property
    def models_dir(self) -> Path:
        return self.home / "models"


class ReplicaSettings(Settings):
    database_url: str = Field(description="Required in a replica: SERVE_APP_DATABASE_URL (postgresql://…).")
    redis_url: str = Field(description="Required in a replica: SERVE_APP_REDIS_URL (redis://…).")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: the form that may be printed or logged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
