"""Data shapes that cross module and deployment boundaries (plain pydantic models, serialisable)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Entities(BaseModel):
    """What was read out of a query. Every field is optional: unknown stays ``None``."""

    model_config = ConfigDict(extra="forbid")

    bank: str | None = Field(default=None, description="Institution name, e.g. 华夏银行.")
    bank_code: str | None = Field(default=None, description="CNAPS bank class, e.g. 304.")
    province: str | None = None
    city: str | None = Field(default=None, description="Prefecture-level city, e.g. 绵阳市.")
    district: str | None = Field(default=None, description="County-level unit, e.g. 江油市.")
    branch: str | None = Field(default=None, description="Branch keyword, e.g. 江油西山支行.")


class Match(BaseModel):
    """One directory record returned for a query, best first."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="12-digit CNAPS code (联行号).")
    name: str = Field(description="Official branch name.")
    bank: str
    province: str
    city: str
    score: float = Field(description="Ranking score; higher is better. Comparable within one response.")
