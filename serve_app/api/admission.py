"""Admission control for the HTTP API: at most ``max_in_flight`` requests at work, ``max_waiting`` in line.

The bounds are the ingress's ``resources.max_ongoing_requests`` and ``max_queued_requests`` (fixed for a
replica's life, as Serve's are). A request past both is answered at once with the JSON 503 ``overloaded``
and a Retry-After, like every other error. The ingress deployment's own Serve bounds are set above these
(``Resources.ingress_options``), so its requests queue here, not in Serve's proxy — whose overflow answer
is a plain-text 503 a client cannot parse. Probes (``/healthz``, ``/readyz``) are never queued: an
overloaded service is still alive. A slot is held while a request is read and answered, and given back
when its response starts: a client that reads a download slowly holds a connection, not a slot (and one
that sends its body slowly is cut off by the body's pace, ``api.body``).
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.api.errors import render
from serve_app.errors import Overloaded

PROBES = frozenset({"/healthz", "/readyz"})


class Admission:
    def __init__(self, app: ASGIApp, max_in_flight: int, max_waiting: int):
        """``max_waiting`` < 0: an unbounded line (Serve's ``max_queued_requests: -1``)."""
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_waiting = max_waiting
        self.waiting = 0
        self._slots = asyncio.Semaphore(max_in_flight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        if self._slots.locked() and 0 <= self.max_waiting <= self.waiting:
            await _reject(send)
            return
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._slots.release()

        async def send_then_release(message: Message) -> None:
            if message["type"] == "http.response.start":
                release()  # the answer is made: a slow reader of a download holds no slot
            await send(message)

        try:
            await self.app(scope, receive, send_then_release)
        finally:
            release()


async def _reject(send: Send) -> None:
    status, body, headers = render(Overloaded("the service is at capacity; retry shortly"))
    payload = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})
