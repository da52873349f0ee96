"""Reading request bodies and query strings into validated models, bounded before any work is done."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from serve_app import errors as e
from serve_app.schemas import validation_message

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class BodyPace:
    """How slowly a body may arrive: ``grace_s``, plus one second per ``min_bytes_per_s`` bytes received
    (``IngressConfig.body_grace_s`` and ``min_body_bytes_per_s``)."""

    grace_s: float
    min_bytes_per_s: int


async def read_body(request: Request, limit: int, pace: BodyPace) -> bytes:
    """The whole body; ``BodyTooLarge`` as soon as it (or its declared length) passes ``limit`` bytes,
    ``BodyTimeout`` as soon as it falls behind ``pace`` (a client sending a byte a second holds a slot)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise e.BodyTooLarge(f"request body is limited to {limit} bytes")
    body = bytearray()
    started = asyncio.get_running_loop().time()
    try:
        async with asyncio.timeout_at(started + pace.grace_s) as deadline:
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise e.BodyTooLarge(f"request body is limited to {limit} bytes")
                deadline.reschedule(started + pace.grace_s + len(body) / pace.min_bytes_per_s)
    except TimeoutError as exc:
        raise e.BodyTimeout(
            f"the request body arrived too slowly ({len(body):,} bytes in {pace.grace_s:g} s and more); send it "
            f"at {pace.min_bytes_per_s:,} bytes/s or faster"
        ) from exc
    return bytes(body)


async def read_json(request: Request, model: type[ModelT], limit: int, pace: BodyPace) -> ModelT:
    """The body as ``model``: ``MalformedBody`` for anything but UTF-8 JSON, ``InvalidRequest`` for a body
    that is not an object or does not validate."""
    body = await read_body(request, limit, pace)
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise e.MalformedBody(f"body is not UTF-8 JSON: {exc}") from exc
    except RecursionError as exc:  # a small body can nest deeper than the parser recurses
        raise e.MalformedBody("body nests too deeply") from exc
    if not isinstance(data, dict):
        raise e.InvalidRequest("body must be a JSON object")
    return validate(model, data)


def validate(model: type[ModelT], data: dict[str, Any]) -> ModelT:
    """``data`` as ``model``, or ``InvalidRequest`` naming each field's problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise e.InvalidRequest(validation_message(exc)) from exc
