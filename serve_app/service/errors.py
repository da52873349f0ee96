"""Errors a client may see, each with an HTTP status, a stable code and a message. Mapped in one place."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def unavailable(what: str, retry_after_s: int = 1) -> ApiError:
    return ApiError(503, "unavailable", f"{what} is unavailable; retry shortly", {"Retry-After": str(retry_after_s)})
