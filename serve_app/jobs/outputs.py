"""Result files a clerk can act on: the input's columns with their types, then the answer's columns, with
headers in Chinese (English with ``lang=en``), each candidate's code and name in columns of their own.

``result.csv`` is plain text with those columns (every cell ``inert``). ``result.xlsx`` keeps dates as
dates and amounts as numbers where the input had them (the input table's ``column_kinds``; a cell that
does not parse stays text), colours each row by its verdict, freezes and filters the header, sizes the
columns, and adds a sheet with the file's title lines and counts of verdicts and reasons.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from serve_app.jobs.exports import parse_amount, parse_date
from serve_app.jobs.results import CANDIDATES_SHOWN, RowResult

Lang = Literal["zh", "en"]
Kind = Literal["text", "number", "date"]


class ResultQuery(BaseModel):
    """The query string of a job's result downloads."""

    model_config = ConfigDict(extra="forbid")

    lang: Lang = Field(default="zh", description="The answer columns' headers: zh (default) or en.")


@dataclass(frozen=True)
class OutputColumn:
    key: str
    zh: str
    en: str
    kind: Kind = "text"


OUTPUT_COLUMNS: tuple[OutputColumn, ...] = (
    OutputColumn("code", "联行号", "code"),
    OutputColumn("official_name", "行名", "official_name"),
    OutputColumn("bank", "银行", "bank"),
    OutputColumn("city", "城市", "city"),
    OutputColumn("clearing_code", "清算行号", "clearing_code"),
    OutputColumn("verdict", "结论", "verdict"),
    OutputColumn("confidence", "置信度", "confidence", "number"),
    OutputColumn("reason", "原因", "reason"),
    *(
        column
        for n in range(1, CANDIDATES_SHOWN + 1)
        for column in (
            OutputColumn(f"candidate_{n}_code", f"候选{n}联行号", f"candidate_{n}_code"),
            OutputColumn(f"candidate_{n}_name", f"候选{n}行名", f"candidate_{n}_name"),
        )
    ),
    OutputColumn("directory_as_of", "行号目录日期", "directory_as_of", "date"),
    OutputColumn("data_version", "目录版本", "data_version", "number"),
    OutputColumn("error", "错误", "error"),
    OutputColumn("decision", "人工决定", "decision"),
    OutputColumn("decided_by", "决定人", "decided_by"),
    OutputColumn("decided_at", "决定时间", "decided_at"),
)
#: The decision column of a row decided "no such branch in the directory".
DECIDED_NONE = "none"


class Decision(BaseModel):
    """A person's decision on a row (``jobs.review``), as the API shows it and the result files write it."""

    code: str | None = Field(description='The branch chosen; null with none: "no such branch in the directory".')
    decided_by: str = Field(description="The label of the API key that decided (its id when it has none).")
    decided_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def none(self) -> bool:
        """Decided "no such branch in the directory"."""
        return self.code is None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Decision | None:
        """From a ``job_rows`` row's ``decided_*`` columns; None when it is not decided."""
        if row["decided_at"] is None:
            return None
        return cls(code=row["decided_code"], decided_by=row["decided_by"], decided_at=row["decided_at"])

    def cells(self) -> dict[str, str]:
        return {"decision": self.code or DECIDED_NONE, "decided_by": self.decided_by,
                "decided_at": self.decided_at.strftime("%Y-%m-%d %H:%M")}  # fmt: skip


_CANDIDATE = re.compile(r"(\d{12}) (.+)")
#: Row colours by verdict (pale, so that text stays readable).
FILLS = {"match": "D6F0DC", "ambiguous": "FDF0C9", "none": "E5E7EB", "skipped": "F3F4F6", "error": "F8D7D7"}


def output_header(columns: list[str], lang: Lang = "zh") -> list[str]:
    """The input's header, then the answer's columns in ``lang`` (prefixed where the input has that name)."""
    taken = set(columns)
    prefix = "结果_" if lang == "zh" else "result_"
    names = [getattr(column, lang) for column in OUTPUT_COLUMNS]
    return columns + [name if name not in taken else prefix + name for name in names]


def output_cells(result: RowResult, decision: Decision | None = None) -> list[str]:
    """A row's answer as the output columns' text: the stored fields, the candidates spread over columns,
    and a person's decision on it, if any."""
    stored = dict(zip((f for f in RowResult.__dataclass_fields__), result.cells(), strict=True))
    candidates = _candidates(stored.pop("candidates"))
    spread = {f"candidate_{n}_{part}": value for n, (code, name) in enumerate(candidates, 1)
              for part, value in (("code", code), ("name", name))}  # fmt: skip
    stored |= spread | (decision.cells() if decision else {})
    return [stored.get(column.key, "") for column in OUTPUT_COLUMNS]


def _candidates(text: str) -> list[tuple[str, str]]:
    """``code name; code name (retired as of …)`` as (code, name) pairs."""
    pairs = []
    for part in filter(None, (piece.strip() for piece in text.split("; "))):
        found = _CANDIDATE.fullmatch(part)
        pairs.append((found.group(1), found.group(2)) if found else ("", part))
    return pairs[:CANDIDATES_SHOWN]


def workbook(
    header: list[str],
    rows: list[list[str]],
    kinds: Sequence[str],
    lang: Lang = "zh",
    title_lines: Sequence[Sequence[str]] = (),
) -> bytes:
    """The result workbook: ``header`` over ``rows`` (input cells, then ``output_cells``), the input's
    columns typed by ``kinds``; a summary sheet after it, under the file's own title lines."""
    import openpyxl
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, WriteOnlyCell
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("结果" if lang == "zh" else "result")
    all_kinds = [*kinds, *(column.kind for column in OUTPUT_COLUMNS)]
    verdict_at = len(kinds) + [column.key for column in OUTPUT_COLUMNS].index("verdict")
    error_at = len(kinds) + [column.key for column in OUTPUT_COLUMNS].index("error")
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(header))}{len(rows) + 1}"
    for index, name in enumerate(header):
        widest = max([_width(name), *(_width(row[index]) for row in rows[:200])])
        sheet.column_dimensions[get_column_letter(index + 1)].width = min(max(widest + 2, 8), 60)
    bold = Font(bold=True)
    sheet.append([_cell(WriteOnlyCell(sheet, value=name), font=bold) for name in header])
    fills = {verdict: PatternFill("solid", fgColor=colour) for verdict, colour in FILLS.items()}
    for row in rows:
        verdict = row[verdict_at] or ("error" if row[error_at] else "")
        fill = fills.get(verdict)
        cells = []
        for value, kind in zip(row, all_kinds, strict=True):
            typed = _typed(value, kind)
            cell = WriteOnlyCell(
                sheet, value=typed if typed is not None else ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
            )
            if typed is None:
                cell.data_type = "s"  # text stays text: never a formula, codes keep their digits
            elif isinstance(typed, datetime):
                cell.number_format = "yyyy-mm-dd hh:mm" if typed.hour or typed.minute else "yyyy-mm-dd"
            cells.append(_cell(cell, fill=fill))
        sheet.append(cells)
    _summary(book, rows, verdict_at, lang, title_lines)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _typed(value: str, kind: str) -> datetime | float | None:
    if not value.strip() or kind == "text":
        return None
    if kind == "date":
        return parse_date(value)
    return parse_amount(value) if "," in value or "." in value else _plain(value)


def _plain(value: str) -> float | None:
    """A number column's cell without separators (``12``): a number too, if it is one."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if abs(number) < 1e15 else None


def _cell(cell, *, font=None, fill=None):
    if font is not None:
        cell.font = font
    if fill is not None:
        cell.fill = fill
    return cell


def _width(text: str) -> int:
    return sum(2 if ord(char) > 0x2E80 else 1 for char in text)


def _summary(book, rows: list[list[str]], verdict_at: int, lang: Lang, title_lines: Sequence[Sequence[str]]) -> None:
    """The file's title lines (an export's 账户名称, 起止日期 …, kept as read), then counts by verdict and by
    reason, on a sheet of their own."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    sheet = book.create_sheet("汇总" if lang == "zh" else "summary")
    for line in title_lines:
        sheet.append([ILLEGAL_CHARACTERS_RE.sub("\ufffd", cell) for cell in line])
    if title_lines:
        sheet.append([])
    reason_at = verdict_at + 2
    verdicts = Counter(row[verdict_at] or "error" for row in rows)
    reasons = Counter((row[verdict_at] or "error", row[reason_at]) for row in rows)
    sheet.append(["结论", "行数"] if lang == "zh" else ["verdict", "rows"])
    for verdict in ("match", "ambiguous", "none", "skipped", "error"):
        sheet.append([verdict, verdicts.get(verdict, 0)])
    keys = [column.key for column in OUTPUT_COLUMNS]
    decision_at = verdict_at + keys.index("decision") - keys.index("verdict")
    sheet.append(["人工决定" if lang == "zh" else "decided", sum(1 for row in rows if row[decision_at])])
    sheet.append([])
    sheet.append(["结论", "原因", "行数"] if lang == "zh" else ["verdict", "reason", "rows"])
    for (verdict, reason), count in sorted(reasons.items()):
        sheet.append([verdict, reason, count])
