"""Checks on a request that are about who may send it and how, not what it asks: an open service's
locality, an idempotency key's shape, and the headers the page is served with."""

from __future__ import annotations

from starlette.requests import Request

from serve_app import errors as e
from serve_app.service.tenants import is_loopback

#: Host names an open (loopback-only) service answers to: a web page elsewhere that rebinds its own name to
#: 127.0.0.1 reaches the port, but not with these names.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
#: The page loads nothing from elsewhere and runs no inline script; it cannot be framed.
PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def check_local(request: Request) -> None:
    """``Forbidden`` unless the request comes from this machine and is addressed to it by a loopback name:
    what ``auth: open`` (one tenant for every caller) may answer."""
    host = request.client.host if request.client else "unknown"
    if not is_loopback(host):
        raise e.Forbidden(
            "this service runs with auth: open, which answers only its own machine; "
            "use auth: keys (serve-app keys create) to serve other machines"
        )
    if (request.url.hostname or "") not in LOOPBACK_NAMES:  # a page elsewhere, rebinding its DNS to us
        raise e.Forbidden("auth: open answers requests addressed to localhost or 127.0.0.1 only")


def idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header: 1-128 visible ASCII characters, or ``InvalidRequest``."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 128 or not all(33 <= ord(c) < 127 for c in key):
        raise e.InvalidRequest("Idempotency-Key is 1-128 visible ASCII characters")
    return key
