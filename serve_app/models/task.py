"""The extraction task for the model: the prompt around a normalized query, and reading its JSON answer.

A fine-tuned adapter answers with one JSON object of the entity schema. Anything else — not JSON, not an
object, unknown fields, wrong types, cut short — is reported as invalid with the reason, never raised:
the caller falls back to the rules result.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, ValidationError

from serve_app.schemas import Entities

#: Short on purpose: every token of it is computed for every query, and small English-centric tokenizers
#: spend two tokens per Chinese character.
PROMPT_TEMPLATE = "Bank branch to JSON.\nQuery: {query}\nJSON: "

#: The JSON schema the model must produce (for structured decoding): the entity fields, strings or null.
MODEL_FIELDS = ("bank", "province", "city", "district", "branch")
OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {name: {"type": ["string", "null"], "maxLength": 40} for name in MODEL_FIELDS},
    "required": list(MODEL_FIELDS),
    "additionalProperties": False,
}


class ModelAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entities: Entities | None
    valid: bool
    error: str | None = None
    raw: str


def build_prompt(normalized_query: str) -> str:
    return PROMPT_TEMPLATE.format(query=normalized_query)


def parse_answer(text: str, finished: bool = True) -> ModelAnswer:
    """Read the model's output; ``finished`` is False when generation hit its token limit."""
    candidate = text.strip()
    try:
        data = json.loads(candidate)
    except json.JSONDecodeError as exc:
        reason = "output cut short before the JSON closed" if not finished else f"not JSON: {exc.msg}"
        return ModelAnswer(entities=None, valid=False, error=reason, raw=text)
    if not isinstance(data, dict):
        return ModelAnswer(entities=None, valid=False, error="JSON is not an object", raw=text)
    try:
        entities = Entities(**{key: (value or None) for key, value in data.items()})
    except (ValidationError, TypeError) as exc:
        return ModelAnswer(entities=None, valid=False, error=f"does not fit the entity schema: {exc}", raw=text)
    return ModelAnswer(entities=entities, valid=True, raw=text)
