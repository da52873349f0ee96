"""How banks export statements: where the header is, which column names the counterparty's bank, and
which rows are not transactions.

Exports put title lines above the header (账户名称, 账号, 起止日期, a merged title cell), and totals,
print times and page footers among or after the transactions. The header is the first row, within the
first ``HEADER_SEARCH_ROWS``, that names a bank column (the list is data: ``data/bank_columns.txt``), or
the column asked for; the rows above it are kept as the file's title lines. A row with no bank name, a
total (合计, 小计 …) or a footer (打印时间, 第 1 页 …) is kept in its place and marked ``skipped`` with
a reason, never asked and never an error.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from importlib import resources

from serve_app.errors import UnreadableFile

#: Rows searched for the header.
HEADER_SEARCH_ROWS = 20
#: A cell that makes its row a total, or a print or page footer (at the start of a cell, spaces ignored).
_TOTAL = re.compile(r"^(?:合计|小计|总计|累计|本页合计|本页小计|本月合计|本期合计|总笔数|笔数合计|total\b|subtotal\b)",
                    re.IGNORECASE)  # fmt: skip
_FOOTER = re.compile(r"^(?:打印时间|打印日期|打印人|制表|制单|经办|复核|第\d+页|共\d+页|页码|page\s*\d+|printed)",
                     re.IGNORECASE)  # fmt: skip
SKIP_REASONS = ("no_bank_name", "total_line", "footer")
#: Share of a column's non-empty transaction cells that must be of one type for the column to be typed.
TYPED_SHARE = 0.9
_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
#: An amount: a decimal point or thousands separators (a bare integer may be an account number or a code).
_AMOUNT = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)\.\d+$|^[+-]?\d{1,3}(?:,\d{3})+$")


@cache
def bank_column_names() -> tuple[str, ...]:
    """The headers that name the counterparty's bank, most specific first (``data/bank_columns.txt``)."""
    text = (resources.files("serve_app") / "data" / "bank_columns.txt").read_text(encoding="utf-8")
    return tuple(key(line) for line in text.splitlines() if line.strip() and not line.startswith("#"))


def key(name: str) -> str:
    """A header as compared: spaces removed, case folded (对方 开户行 = 对方开户行, Bank Name = bank name)."""
    folded = " ".join(name.split()).casefold()
    return folded.replace(" ", "") if _has_cjk(folded) else folded


def locate_header(rows: list[list[str]], column: str | None) -> int:
    """The index of the header among the first rows: the first that has ``column`` (a name asked for) or,
    without one, a bank column's name; 0 when none does (the first row is the header)."""
    wanted = {key(column)} if column and column.strip() and not column.strip().isdigit() else set(bank_column_names())
    for index, row in enumerate(rows[:HEADER_SEARCH_ROWS]):
        if wanted & {key(cell) for cell in row if cell}:
            return index
    return 0


def text_column(columns: list[str], column: str | None, header_line: int) -> int:
    """The index of the column to look up: ``column`` (a header, or a 1-based number), else the first header
    that names a bank. ``header_line`` (1-based, in the file) is named in the messages."""
    if column is not None and column.strip():
        wanted = column.strip()
        if wanted.isdigit():
            number = int(wanted)
            if not 1 <= number <= len(columns):
                raise UnreadableFile(f"column {number} does not exist: the file has {len(columns)} columns")
            return number - 1
        for index, name in enumerate(columns):
            if key(name) == key(wanted):
                return index
        raise UnreadableFile(
            f"no column named {wanted!r} in the header (line {header_line}); its columns are: {', '.join(columns)}"
        )
    keys = [key(name) for name in columns]
    for candidate in bank_column_names():
        if candidate in keys:
            return keys.index(candidate)
    raise UnreadableFile(
        f"no column looks like a bank name in the first {HEADER_SEARCH_ROWS} lines: name it (column= in the API, "
        f"--column in serve-app reconcile, the column box on the page; a header or a 1-based number). "
        f"Line {header_line} has: {', '.join(columns)}"
    )


def skip_reason(row: list[str], text_column: int) -> str | None:
    """Why a row is not a transaction to look up (``SKIP_REASONS``), or None for one that is."""
    cells = ["".join(cell.split()) for cell in row]
    if any(_TOTAL.match(cell) for cell in cells if cell):
        return "total_line"
    if any(_FOOTER.match(cell) for cell in cells if cell):
        return "footer"
    if not cells[text_column]:
        return "no_bank_name"
    return None


def parse_date(cell: str) -> datetime | None:
    """A date (and time) as exports write them: 2025-11-01, 2025/11/01 09:30, 2025.11.01 09:30:12."""
    found = _DATE.match(cell.strip())
    if not found:
        return None
    year, month, day, hour, minute, second = (int(part) for part in found.groups(default="0"))
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


def parse_amount(cell: str) -> float | None:
    """An amount: with a decimal point or thousands separators, and short enough not to be an account."""
    text = cell.strip()
    if not _AMOUNT.match(text):
        return None
    value = float(text.replace(",", ""))
    return value if abs(value) < 1e15 else None


def cell_kind(cell: str) -> str:
    """A text cell's type: ``empty``, ``date``, ``number`` (an amount) or ``text``."""
    if not cell.strip():
        return "empty"
    if parse_date(cell) is not None:
        return "date"
    return "number" if parse_amount(cell) is not None else "text"


def column_kinds(cell_kinds: Iterable[Sequence[str]], width: int) -> list[str]:
    """Each column's type from its cells' (``cell_kind``, or a workbook's stored types) in transaction rows:
    ``date`` or ``number`` when at least ``TYPED_SHARE`` of its non-empty cells are, else ``text``."""
    counts: list[Counter[str]] = [Counter() for _ in range(width)]
    for row in cell_kinds:
        for index, kind in enumerate(row[:width]):
            counts[index][kind] += 1
    kinds = []
    for column in counts:
        cells = column.total() - column["empty"]
        kinds.append(next((k for k in ("date", "number") if cells and column[k] >= TYPED_SHARE * cells), "text"))
    return kinds


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= char <= "\u9fff" for char in text)
