"""What handlers return, and how it becomes a response with the status the route table gives."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel
from starlette.responses import Response

#: A handler's body: a model, a list of models, plain JSON data, or nothing (204).
Body = BaseModel | Sequence[BaseModel] | dict[str, Any] | None


@dataclass(frozen=True)
class Reply:
    """A body with extra headers (``Location`` of a created job)."""

    body: Body
    headers: dict[str, str] = field(default_factory=dict)


def respond(status: int, value: Response | Reply | Body) -> Response:
    """``value`` as a response: a ready response unchanged, anything else as JSON with ``status``."""
    if isinstance(value, Response):
        return value
    reply = value if isinstance(value, Reply) else Reply(value)
    if reply.body is None:
        return Response(status_code=status, headers=reply.headers)
    return Response(_encode(reply.body), status_code=status, media_type="application/json", headers=reply.headers)


def _encode(body: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> str:
    if isinstance(body, BaseModel):
        return body.model_dump_json()
    if isinstance(body, dict):
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return "[" + ",".join(model.model_dump_json() for model in body) + "]"


def attachment(filename: str) -> dict[str, str]:
    """A Content-Disposition that carries a non-ASCII file name (RFC 6266) with an ASCII fallback."""
    fallback = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in filename)
    return {"content-disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"}
