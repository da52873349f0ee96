"""What retrieval finds: directory records considered for a query (``Candidate``) and the search's outcome
(``Retrieval``), which the verdict judges. Plain data; ``serve_app.query.retrieval`` fills them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import asyncpg


@dataclass(frozen=True)
class Candidate:
    """A directory record considered for a query, with the ranking score of the statement that found it."""

    code: str
    name: str
    bank: str
    bank_code: str
    province: str
    city: str
    district: str | None
    branch: str  # the record's branch keyword: its normalized name after the institution
    score: float
    clearing_code: str | None = None
    retired_on: date | None = None  # set when a snapshot no longer has the code: never payable

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Candidate:
        return cls(
            code=row["code"],
            name=row["name"],
            bank=row["bank_name"],
            bank_code=row["bank_code"],
            province=row["province"],
            city=row["city"],
            district=row["district"],
            branch=row["branch"],
            score=round(float(row["score"]), 4),
            clearing_code=row["clearing_code"],
            retired_on=row["retired_on"],
        )


@dataclass(frozen=True)
class Retrieval:
    candidates: list[Candidate]
    #: For a query whose bank was read and that found no candidate: does the directory hold that bank at all?
    bank_in_directory: bool | None = None
    #: The branch keyword the candidates were found by, when it is not the one read: the name as far as its
    #: last level, the words written after it set aside (``name_before_tail``). The verdict judges by it.
    branch: str | None = None
    #: For a bank and a place with no level after them (中国银行安远): how many active branches the bank has in
    #: that place (its district, when one was read). None when not asked.
    branches_there: int | None = None
    #: Found only by the last resort, names sharing some of the keyword's trigrams: a choice, never a match.
    loosely: bool = False
