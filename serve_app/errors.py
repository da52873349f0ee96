"""The domain's exceptions: what went wrong, in the service's words, with a message safe to show a client.

Code anywhere in ``serve_app`` raises these; it never picks an HTTP status. The one table that maps each
to a status, a stable error code and headers is ``serve_app.api.errors.ERRORS``. They pickle with
their message and ``retry_after_s``, so they cross Ray deployment handles intact.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class. ``message`` is for the client; ``retry_after_s`` overrides the table's Retry-After;
    ``details`` (JSON-safe) are added to the error object the client gets."""

    def __init__(self, message: str, retry_after_s: int | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.details = details

    def __reduce__(self):
        return type(self), (self.message, self.retry_after_s, self.details)


# --- the request itself ---------------------------------------------------------------------------------


class MalformedBody(ServiceError):
    """The body is not UTF-8 JSON (or nests too deeply to parse)."""


class BodyTooLarge(ServiceError):
    """The body is over the configured limit."""


class BodyTimeout(ServiceError):
    """The body arrived too slowly (a client holding a slot open: slowloris)."""


class InvalidRequest(ServiceError):
    """The body parsed but does not validate."""


class Unauthorized(ServiceError):
    """A credential is required and missing or wrong."""


class AdminDisabled(ServiceError):
    """The admin API is off (no admin token configured)."""


class RateLimited(ServiceError):
    """The caller's token bucket is empty; ``retry_after_s`` says when it refills."""


class QuotaExceeded(ServiceError):
    """A tenant has as many jobs queued or running, or as many rows stored, as it may."""


class InvalidCode(ServiceError):
    """A CNAPS code that is not 12 digits or fails its check digit."""


class UnknownCode(ServiceError):
    """A well-formed CNAPS code the directory does not hold."""


class RetiredCode(ServiceError):
    """A CNAPS code the directory held and has retired: ``details["branch"]`` is its last record."""


class Forbidden(ServiceError):
    """The caller's key is valid but may not do this (e.g. name another tenant's adapter)."""


# --- bulk jobs ------------------------------------------------------------------------------------------


class UnreadableFile(ServiceError):
    """An upload that is not a CSV, XLSX or JSON-lines file in a known encoding, or lacks the text column."""


class TooManyRows(ServiceError):
    """An upload with more rows than the service takes in one job (or lines in one batch)."""


class UnknownJob(ServiceError):
    """No job with that id belongs to the caller's tenant."""


class UnknownRow(ServiceError):
    """The caller's job has no row with that number."""


class UnknownConfirmation(ServiceError):
    """The caller's tenant has no confirmation with that id."""


class TrainingInProgress(ServiceError):
    """A training run of that adapter is already queued or running (one at a time per adapter)."""


class UnknownTrainingRun(ServiceError):
    """No training run with that id for this adapter and caller."""


class JobNotDone(ServiceError):
    """A job's result was asked for before every row was done."""


# --- adapters -------------------------------------------------------------------------------------------


class AdapterError(ServiceError, ValueError):
    """An adapter cannot be used. The subclasses say why; this base is never raised itself."""


class UnknownAdapter(AdapterError):
    """No adapter of that name is registered (never was, or was deleted)."""

    @classmethod
    def named(cls, name: str) -> UnknownAdapter:
        return cls(f"no adapter named {name!r} is registered")


class AdapterInvalid(AdapterError):
    """The adapter's folder, config or weights are unusable with the resident base model."""


class AdapterExists(AdapterError):
    """A registration under a name that is taken."""


class AdapterNotLoaded(AdapterError):
    """An engine was asked to generate with an adapter it does not hold (an internal race, retried)."""


class NoModelDeployment(ServiceError):
    """An adapter was asked for, or registered, but this application runs without model replicas."""


# --- dependencies ---------------------------------------------------------------------------------------


class DependencyUnavailable(ServiceError):
    """A back-end (PostgreSQL, Redis, a deployment) failed; retrying later may succeed."""


class DependencyTimeout(ServiceError):
    """A back-end did not answer in time."""


class Overloaded(ServiceError):
    """Every replica's queue is full (back-pressure)."""


class ModelUnavailable(ServiceError):
    """No model replica could answer, or its engine failed; retrying may succeed."""


class EngineError(ModelUnavailable):
    """An engine cannot serve: not started, its base failed to load, or it is unhealthy."""


class ModelWarming(ServiceError):
    """Model replicas are configured but not up yet (the demo model is being built): retry later."""


class NotReady(ServiceError):
    """The application is up but cannot answer yet (warming up, or a health check failed)."""


def unavailable(what: str) -> DependencyUnavailable:
    return DependencyUnavailable(f"{what} is unavailable; retry shortly")
