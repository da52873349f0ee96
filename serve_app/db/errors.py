"""What counts as PostgreSQL trouble, and how it reaches a client: the one place that decides.

Inside ``database_errors(what)``, a lookup that ran out of time becomes ``DependencyTimeout`` (504) and a
failure becomes ``DependencyUnavailable`` (503), both naming ``what``. Anything else passes through. Each
part of the service wraps its own database calls, naming what it reads, so a failure is reported as the
part that failed (the directory, the registry, the job store, the extraction vocabulary).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from serve_app.errors import DependencyTimeout, unavailable

log = logging.getLogger(__name__)

#: The database did not answer in time: its statement timeout fired, or no pooled connection came free.
DATABASE_TIMEOUTS = (TimeoutError, asyncpg.QueryCanceledError)
#: What counts as "the database is down" (connection refused/reset, shutdown, any server error).
#: ``InternalClientError`` is asyncpg finding a connection mid-operation when the pool resets it after
#: the server went away under a query; the pool has already terminated that connection.
DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
#: What each part of the database is called in an error a client sees.
DIRECTORY = "the branch directory (PostgreSQL)"
ADAPTER_REGISTRY = "the adapter registry (PostgreSQL)"
JOB_STORE = "the job store (PostgreSQL)"
API_KEYS = "API keys (PostgreSQL)"
VOCABULARY = "the extraction vocabulary (PostgreSQL)"
CONFIRMATIONS = "the tenant's confirmations (PostgreSQL)"
TRAINING_RUNS = "training runs (PostgreSQL)"


def database_timeout(exc: BaseException, what: str = DIRECTORY) -> DependencyTimeout:
    """The error for a lookup that ran out of time: its statement was cancelled, or no connection came free."""
    if isinstance(exc, asyncpg.QueryCanceledError):
        reason = f"{what} did not answer within its statement timeout"
    else:
        reason = f"no connection to {what} came free in time"
    return DependencyTimeout(f"{reason}; retry shortly")


@contextmanager
def database_errors(what: str = DIRECTORY) -> Iterator[None]:
    try:
        yield
    except DATABASE_TIMEOUTS as exc:
        log.warning("database timeout (%s): %r", what, exc)
        raise database_timeout(exc, what) from exc
    except DATABASE_ERRORS as exc:
        log.warning("database error (%s): %r", what, exc)
        raise unavailable(what) from exc
