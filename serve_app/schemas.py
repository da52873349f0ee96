"""Data shapes that cross module and deployment boundaries (plain pydantic models, serialisable)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

#: Longest query accepted. Real branch names are under 60 characters; statements add boilerplate.
MAX_QUERY_CHARS = 512
MAX_TOP_K = 50
#: Adapter names: what the registry accepts, so a request naming anything else is refused at the edge.
ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
ADAPTER_NAME_RULE = "adapter names are 1-64 letters, digits, '_' or '-', starting with a letter or digit"
#: C0/C1 control characters other than tab, newline and carriage return (a regex class body). PostgreSQL
#: cannot store NUL, and none of them belongs in a branch name or a path. (Lone surrogates, which JSON
#: can spell as escapes, are already refused by pydantic's string validation.)
CONTROL_CHARACTERS = "\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f"
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")


def refuse_control_characters(value: str, what: str) -> str:
    """``value`` unchanged, or ``ValueError`` naming ``what`` if it holds a control character."""
    if _CONTROL.search(value):
        raise ValueError(f"{what} must not contain control characters (other than tab and newline)")
    return value


def validation_message(exc: ValidationError) -> str:
    """A pydantic error as one line a client can act on: ``field: problem; ...``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


class Entities(BaseModel):
    """What was read out of a query. Every field is optional: unknown stays ``None``."""

    model_config = ConfigDict(extra="forbid")

    bank: str | None = Field(default=None, description="Institution name, e.g. 华夏银行.")
    bank_code: str | None = Field(default=None, description="CNAPS bank class, e.g. 304.")
    province: str | None = None
    city: str | None = Field(default=None, description="Prefecture-level city, e.g. 绵阳市.")
    district: str | None = Field(default=None, description="County-level unit, e.g. 江油市.")
    branch: str | None = Field(default=None, description="Branch keyword, e.g. 江油西山支行.")


#: How one part of the query agrees with a record: the same; the start of it (a name cut short, as statement
#: exports cut it: 江油西 of 江油西山支行); close (contained, similar); not at all; or the query does not say.
Agreement = Literal["exact", "prefix", "partial", "none", "unstated"]
Verdict = Literal["match", "ambiguous", "none"]
#: Why a verdict was given (docs/verdicts.md has each one's meaning): stable codes a client may branch on.
Reason = Literal[
    "code_lookup", "unique_fit", "several_fit", "uncertain_fit", "not_payable", "bank_unknown", "bank_uncertain",
    "code_conflict", "bank_not_in_directory", "no_branch_fits", "no_branch_in_place", "no_branch_named",
    "invalid_code", "code_not_in_directory", "branch_retired", "nothing_to_match", "confirmed", "confirmed_none",
]  # fmt: skip


class Evidence(BaseModel):
    """Which parts of the query agree with a record, so an auditor sees why it was proposed."""

    model_config = ConfigDict(extra="forbid")

    bank: Agreement
    city: Agreement
    district: Agreement
    branch: Agreement = Field(description="The branch keyword, place names and level aside.")


class Branch(BaseModel):
    """A directory record's public fields. Built from any object that has them (``from_attributes``)."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)

    code: str = Field(description="12-digit CNAPS code (联行号).")
    name: str = Field(description="Official branch name.")
    bank: str
    province: str
    city: str
    district: str | None = None
    clearing_code: str | None = Field(
        default=None, description="清算行号: the direct participant this branch settles through, when known."
    )
    retired_on: date | None = Field(
        default=None, description="Set when the directory no longer has the code (as-of date of that snapshot)."
    )


class Match(Branch):
    """One directory record proposed for a query, most probable first."""

    confidence: float = Field(
        ge=0.0, le=1.0, description="Calibrated probability that this is the branch the query means."
    )
    evidence: Evidence
    score: float = Field(description="Retrieval ranking score; comparable within one response only.")


class BranchRecordOut(Branch):
    """One directory record (``GET /api/v1/branches/{code}``)."""

    bank_code: str = Field(description="CNAPS bank class: the code's first 3 digits.")


class Extraction(BaseModel):
    """What an extractor read out of one normalized query."""

    model_config = ConfigDict(extra="forbid")

    entities: Entities
    confidence: float = Field(ge=0.0, le=1.0, description="How complete the reading is; low → ask the model.")
    level: str | None = Field(default=None, description="Branch level at the end of the text, e.g. 支行.")
    other_bank: str | None = Field(default=None, description="A second bank the text names: the bank is uncertain.")
    bank_written: str | None = Field(default=None, description="The bank as written: its places are not the branch's.")
    extractor_version: int


class QueryRequest(BaseModel):
    """A validated query. Built from untrusted input before anything else sees it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    query: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="Free text naming a branch; no control characters but tab and newline.",
        json_schema_extra={"pattern": f"^[^{CONTROL_CHARACTERS}]*$"},
    )
    model: str | None = Field(
        default=None,
        description="Registered LoRA adapter to extract with; null for rules only.",
        json_schema_extra={"pattern": ADAPTER_NAME.pattern},
    )
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K)

    @field_validator("query")
    @classmethod
    def _no_control_characters(cls, value: str) -> str:
        return refuse_control_characters(value, "query")

    @field_validator("model")
    @classmethod
    def _blank_model_is_none_else_a_name(cls, value: str | None) -> str | None:
        return adapter_name_or_none(value)


def adapter_name_or_none(value: str | None) -> str | None:
    """An adapter name as requested: blank is None, anything else must be a valid name."""
    if value and not ADAPTER_NAME.fullmatch(value):
        raise ValueError(ADAPTER_NAME_RULE)
    return value or None


_MODEL_FIELD = Field(
    default=None,
    description="Registered LoRA adapter to extract with; null for rules only.",
    json_schema_extra={"pattern": ADAPTER_NAME.pattern},
)


class BatchRequest(BaseModel):
    """``POST /api/v1/query/batch``: many lines, one adapter and ``top_k`` for all of them."""

    model_config = ConfigDict(extra="forbid")

    queries: list[str] = Field(min_length=1, description="Lines to answer, in order; each is checked like a query.")
    model: str | None = _MODEL_FIELD
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K)

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str | None) -> str | None:
        return adapter_name_or_none(value)


class JobParams(BaseModel):
    """The query string of ``POST /api/v1/jobs`` (the body is the file itself)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    filename: str | None = Field(default=None, max_length=255, description="Shown in the job and its result's name.")
    column: str | None = Field(
        default=None, max_length=128, description="Header or 1-based number of the bank column; default: detected."
    )
    encoding: str | None = Field(
        default=None, max_length=32, description="Text encoding; default: UTF-16 with a BOM, UTF-8, else GB18030."
    )
    format: Literal["csv", "xlsx", "jsonl"] | None = Field(default=None, description="Default: detected.")
    model: str | None = _MODEL_FIELD

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str | None) -> str | None:
        return adapter_name_or_none(value)

    @field_validator("filename")
    @classmethod
    def _filename(cls, value: str | None) -> str | None:
        return None if value is None else refuse_control_characters(value, "filename")


#: How the model's reading was used, when an adapter was asked: the same fields in the extraction step's
#: outcome and in the answer.
EntitiesSource = Annotated[
    dict[str, Literal["rules", "model", "both"]] | None,
    Field(description="Where each field of ``entities`` came from, when the model was asked."),
]
ModelOverruled = Annotated[
    dict[str, str] | None, Field(description="Fields of the model's reading that were not used, and why.")
]
ModelError = Annotated[str | None, Field(description="Why the model's answer was not used at all (invalid output).")]


#: Why a tenant's decision on a text was not used: its branch was retired, renamed or moved, or is gone.
NotUsedBecause = Literal["retired", "changed", "not_in_directory"]


class Confirmation(BaseModel):
    """A person of the caller's tenant decided this text before (``POST …/rows/{n}/decision``): the code
    they chose (None: "no such branch in the directory"), who and when, and whether this answer used it.
    A decision whose branch has since been retired, renamed or moved is not used, and says why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str | None
    name: str | None = None
    city: str | None = None
    decided_by: str
    decided_at: datetime
    used: bool = True
    not_used_because: NotUsedBecause | None = None


class QueryResult(BaseModel):
    """The answer to one query (``POST /api/v1/query`` and ``serve-app query --json``).

    ``verdict`` is what to do: ``match`` — pay to ``matches[0].code``, one branch fits and the service is
    sure; ``ambiguous`` — a person must choose among ``matches``; ``none`` — no branch in the directory
    fits what was written. ``reason`` is a stable code saying why (see the README).
    """

    model_config = ConfigDict(extra="forbid")

    query: str
    normalized: str
    entities: Entities
    verdict: Verdict
    reason: Reason
    matches: list[Match]
    source: Literal["cache", "rules", "model", "confirmed"]
    model: str | None = Field(default=None, description="The adapter asked, if any.")
    entities_source: EntitiesSource = None
    model_overruled: ModelOverruled = None
    model_error: ModelError = None
    successors: list[Branch] = Field(
        default_factory=list,
        description="For ``branch_retired``: active branches of the retired one's bank and city that may have "
        "taken it over, for a person to choose from (never substituted).",
    )
    data_version: int | None = Field(default=None, description="The directory load this was answered from.")
    directory_as_of: date | None = Field(default=None, description="The as-of date of that directory snapshot.")
    confirmation: Confirmation | None = Field(
        default=None, description="The caller's tenant decided this text before: its decision, used or not."
    )
    timings_ms: dict[str, float]


class ExtractionOutcome(BaseModel):
    """What the extraction step returns to the ingress: the entities used and where they came from."""

    model_config = ConfigDict(extra="forbid")

    entities: Entities
    source: Literal["rules", "model"]
    model: str | None = None
    confidence: float
    model_error: ModelError = None
    entities_source: EntitiesSource = None
    model_overruled: ModelOverruled = None
    other_bank: str | None = Field(default=None, description="A second bank the text names: the bank is uncertain.")
    bank_written: str | None = Field(default=None, description="The bank as written: its places are not the branch's.")
    timings_ms: dict[str, float] = Field(default_factory=dict, description="Milliseconds: ``rules``, ``model``.")


class BatchItem(BaseModel):
    """One line of a batch: its result, or the error that line got (``{"code", "message"}``)."""

    result: QueryResult | None = None
    error: dict[str, str] | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem] = Field(description="One item per query, in the order sent.")
