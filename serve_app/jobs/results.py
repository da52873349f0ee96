"""One input row's answer as stored result columns (``RowResult``, ``RESULT_COLUMNS``), answering rows, and
CSV text made safe for spreadsheets; the output files' columns are ``jobs.outputs``'s.

``code``, ``official_name``, ``bank``, ``city`` and ``clearing_code`` are filled only for a ``match``: a code
there is one to pay to. An ``ambiguous`` row lists its best candidates (``code name`` pairs) for a person to
choose from; a ``branch_retired`` row the retired branch and its possible successors. ``directory_as_of``
and ``data_version`` say which directory snapshot the row was answered from. A row that could not be asked
(too long) has its ``error`` and no verdict. Used alike by bulk jobs and ``serve-app reconcile``
(``POST /api/v1/query/batch`` answers in JSON, not in these columns).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import astuple, dataclass, fields
from datetime import date
from functools import partial
from pathlib import PurePath

from pydantic import ValidationError

from serve_app.concurrency import map_bounded
from serve_app.errors import (
    AdapterError,
    DependencyTimeout,
    DependencyUnavailable,
    ModelUnavailable,
    NoModelDeployment,
    NotReady,
    Overloaded,
)
from serve_app.schemas import Branch, QueryRequest, QueryResult

log = logging.getLogger(__name__)
#: Candidates listed for an ambiguous row in the result files.
CANDIDATES_SHOWN = 3
#: ``top_k`` of the query each row asks: the candidates kept with a row to decide (``choices``).
ROW_TOP_K = 5

#: Answers one valid request; raises a ``ServiceError`` when it cannot.
Answer = Callable[[QueryRequest], Awaitable[QueryResult]]


@dataclass(frozen=True)
class RowResult:
    code: str | None = None
    official_name: str | None = None
    bank: str | None = None
    city: str | None = None
    clearing_code: str | None = None
    verdict: str | None = None
    confidence: float | None = None
    reason: str | None = None
    candidates: str | None = None
    directory_as_of: date | None = None
    data_version: int | None = None
    error: str | None = None
    #: A row that is not ``match``: its candidates (JSON: code, name, bank, city, confidence, evidence,
    #: retired_on), for a person to decide among (``jobs.review``); not a column of the result files.
    choices: str | None = None

    @classmethod
    def of(cls, result: QueryResult) -> RowResult:
        best = result.matches[0] if result.matches else None
        matched = best if result.verdict == "match" else None
        candidates = None
        if result.verdict == "ambiguous":
            candidates = "; ".join(_named(m) for m in result.matches[:CANDIDATES_SHOWN])
        elif result.reason == "branch_retired" and best is not None:
            candidates = "; ".join(_named(b) for b in [best, *result.successors[: CANDIDATES_SHOWN - 1]])
        return cls(
            code=matched.code if matched else None,
            official_name=matched.name if matched else None,
            bank=matched.bank if matched else None,
            city=matched.city if matched else None,
            clearing_code=matched.clearing_code if matched else None,
            verdict=result.verdict,
            confidence=round(best.confidence, 4) if best else None,
            reason=result.reason,
            candidates=candidates,
            directory_as_of=result.directory_as_of,
            data_version=result.data_version,
            choices=None if result.verdict == "match" else _choices(result),
        )

    def values(self) -> tuple:
        """The fields in ``RESULT_COLUMNS`` order, as stored."""
        return astuple(self)

    def cells(self) -> list[str]:
        return [_text(value) for value in self.values()]


def _choices(result: QueryResult) -> str:
    """The candidates a person decides among, as JSON: the matches, and a retired branch's successors."""
    keep = ("code", "name", "bank", "city", "confidence", "evidence", "retired_on")
    shown = [match.model_dump(mode="json", include=set(keep)) for match in result.matches[:ROW_TOP_K]]
    shown += [branch.model_dump(mode="json", include=set(keep)) for branch in result.successors]
    return json.dumps(shown, ensure_ascii=False)


def _named(branch: Branch) -> str:
    """A candidate as a result cell shows it: code and name, and when it left the directory if it did."""
    retired = f" (retired as of {branch.retired_on})" if branch.retired_on else ""
    return f"{branch.code} {branch.name}{retired}"


#: The result columns, after a row's own: ``RowResult``'s fields, in order.
RESULT_COLUMNS = tuple(column.name for column in fields(RowResult))


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):  # stored as float4: print the 4 places it was rounded to, not float4 noise
        return str(round(value, 4))
    return str(value)


#: Failures of a dependency: the row is tried again later (its chunk rolls back), never marked.
TRANSIENT = (DependencyUnavailable, DependencyTimeout, Overloaded, ModelUnavailable, NotReady)
POISON_ROW_ERROR = "this row could not be answered (an internal error, logged); it was not retried"


async def answer_row(answer: Answer, text: str) -> RowResult:
    """The result columns for one cell. Input the service refuses, and an adapter that cannot be used (or
    no model to run it), are the row's ``error``; a dependency's failure is raised, so that the row is tried
    again. Anything else the answer path raises on this text is a *poison row*: retrying it would fail
    the same way and hold its job for ever, so it is the row's ``error`` at once (and logged)."""
    try:
        request = QueryRequest(query=text, top_k=ROW_TOP_K)
    except ValidationError as exc:
        return RowResult(error="; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors()))
    try:
        return RowResult.of(await answer(request))
    except (AdapterError, NoModelDeployment) as exc:
        return RowResult(error=exc.message)
    except TRANSIENT:
        raise
    except Exception:
        log.exception("a row's answer failed; the row is marked: %r", text[:80])
        return RowResult(error=POISON_ROW_ERROR)


async def answer_rows(answer: Answer, texts: list[str], concurrency: int) -> list[RowResult]:
    """``answer_row`` for each text, in order, ``concurrency`` at a time; a text that repeats is asked once
    (statement files name the same counterparty banks again and again)."""
    distinct = list(dict.fromkeys(texts))
    answered = dict(zip(distinct, await map_bounded(partial(answer_row, answer), distinct, concurrency), strict=True))
    return [answered[text] for text in texts]


def result_filename(filename: str, extension: str) -> str:
    """What a job's or a file's result is called: ``对账单.csv`` → ``对账单.result.xlsx``."""
    return f"{PurePath(filename).stem}.result.{extension}"


#: What a spreadsheet program evaluates at the start of a cell (OWASP's CSV-injection list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?\d[\d,]*(?:\.\d+)?")


def inert(cell: str) -> str:
    """A cell as a spreadsheet will show it and never evaluate: text that a program would read as a formula
    (``=HYPERLINK(…)``, ``+1+1``, ``@SUM(…)``) is prefixed with ``'``; a plain number (``-12.50``) stays as it is.
    Statement cells are written by third parties, and the people who download results open them in Excel."""
    if cell.startswith(_FORMULA_START) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def csv_text(rows: Iterable[list[str]]) -> str:
    """Rows as CSV text (RFC 4180: CRLF, quoted where needed), every cell ``inert``. A file starts with a BOM
    and the header, so spreadsheet programs read its Chinese as UTF-8: ``"\ufeff" + csv_text([header, *rows])``."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([inert(cell) for cell in row] for row in rows)
    return buffer.getvalue()
