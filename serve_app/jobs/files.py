"""Reading an uploaded statement file into a table: CSV, XLSX or JSON lines, the header, the text column.

Statement exports are CSV in UTF-8, GBK or UTF-16 ("Unicode text"), or XLSX; programs send JSON lines.
The format is what the caller says, else what the bytes are (an XLSX is a zip; JSON lines start with
``{``), else CSV. Text without a stated encoding is UTF-16 when it starts with a UTF-16 BOM, else UTF-8 (a
BOM is dropped), else GB18030 (a superset of GBK, which is what Chinese banking software writes). Where
the header is (below any title lines), which column is looked up and which rows are not transactions is
``jobs.exports``'s to say. Everything wrong with a file
is an ``UnreadableFile`` naming the problem; too many rows is ``TooManyRows``. No row is dropped: a short
row is padded, a long one widens the header. A CSV blank line is no row.

Files come from outside, so reading is bounded before and while it happens (``UploadLimits``): an XLSX's
unpacked size and each part's compression ratio are checked before it is parsed, and its sheet's claimed
dimensions are ignored; every row read counts (blank ones too), its width, its cells' lengths and NULs
(which PostgreSQL cannot store) are checked as it is read; lines of text are bounded; and the whole read
has a deadline. A file past a limit is refused with the limit named, before any work is done on its rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from serve_app.config import UploadLimits
from serve_app.errors import TooManyRows, UnreadableFile
from serve_app.jobs.exports import cell_kind, column_kinds, locate_header, skip_reason, text_column
from serve_app.jobs.merged_cells import MergedFill, merged_down
from serve_app.jobs.read_limits import ReadBudget, check_archive, check_lines

Format = Literal["csv", "xlsx", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "xlsx", "jsonl")
CONTENT_TYPES: dict[str, Format] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "text/plain": "csv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
}
_XLS_MAGIC = b"\xd0\xcf\x11\xe0"
_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class InputTable:
    """A file as rows of text cells under a header; ``text_column`` indexes the cell to look up."""

    format: Format
    columns: list[str]
    rows: list[list[str]]
    text_column: int
    #: Lines above the header (an export's title: 账户名称, 起止日期 …), kept as read.
    title_lines: list[list[str]] = field(default_factory=list)
    #: The header's line in the file, 1-based.
    header_line: int = 1
    #: Per row: why it is not a transaction (a total, a footer, no bank name), or None (``exports.skip_reason``).
    skips: list[str | None] = field(default_factory=list)
    #: Per column: ``date``, ``number`` or ``text``, from its transaction rows (``exports.column_kinds``): the
    #: types an XLSX stored, the types a text file's cells parse as.
    column_kinds: list[str] = field(default_factory=list)

    def text(self, row: list[str]) -> str:
        return row[self.text_column]


def read_table(
    data: bytes,
    *,
    format: str | None = None,
    content_type: str | None = None,
    encoding: str | None = None,
    column: str | None = None,
    max_rows: int,
    limits: UploadLimits | None = None,
) -> InputTable:
    """The table in ``data``; see the module docstring for how each choice is made and bounded."""
    budget = ReadBudget(limits or UploadLimits(), max_rows)
    kind = _format(data, format, content_type)
    types: list[list[str]] | None = None
    if kind == "jsonl":
        header, rows = _read_jsonl(_text(data, encoding, budget), budget)
        title: list[list[str]] = []
    else:
        if kind == "xlsx":
            lines, types = _read_xlsx(data, budget)
        else:
            lines = _read_csv(_text(data, encoding, budget), budget)
        if not lines:
            raise UnreadableFile("the file is empty: a header row is required")
        found = locate_header(lines, column)
        title, header, rows = lines[:found], lines[found], lines[found + 1 :]
        types = None if types is None else types[found + 1 :]
    columns, rows = _rectangular(header, rows, budget.limits)
    header_line = len(title) + 1
    at = text_column(columns, column, header_line)
    skips = [skip_reason(row, at) for row in rows]
    cell_kinds = types if types is not None else ([cell_kind(cell) for cell in row] for row in rows)
    transactions = (kinds for kinds, skip in zip(cell_kinds, skips, strict=True) if skip is None)
    return InputTable(kind, columns, rows, at, title, header_line, skips, column_kinds(transactions, len(columns)))


def _text(data: bytes, encoding: str | None, budget: ReadBudget) -> str:
    text = _decode(data, encoding)
    check_lines(text, budget.limits)
    return text


def _format(data: bytes, declared: str | None, content_type: str | None) -> Format:
    if declared:
        if declared not in FORMATS:
            raise UnreadableFile(f"format must be one of {', '.join(FORMATS)}, not {declared!r}")
        return declared
    if data.startswith(_XLS_MAGIC):
        raise UnreadableFile("this is an Excel 97-2003 (.xls) file: save it as .xlsx or CSV")
    if data.startswith(_ZIP_MAGIC):
        return "xlsx"
    by_type = CONTENT_TYPES.get((content_type or "").split(";")[0].strip().lower())
    if by_type is not None:
        return by_type
    return "jsonl" if data.lstrip()[:1] == b"{" else "csv"


def _decode(data: bytes, encoding: str | None) -> str:
    if encoding is None and data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"  # Excel's "Unicode text" export: UTF-16 with a BOM (and tabs)
    if encoding is None and b"\x00" in data[:65536]:
        raise UnreadableFile("the file is binary (it holds NUL bytes), not CSV or JSON lines text")
    if encoding:
        try:
            return data.decode(encoding)
        except LookupError as exc:
            raise UnreadableFile(f"unknown encoding {encoding!r}") from exc
        except UnicodeDecodeError as exc:
            raise UnreadableFile(f"the file is not valid {encoding} (byte {exc.start})") from exc
    for candidate in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(candidate)
        except UnicodeDecodeError:
            continue
    raise UnreadableFile("the file is neither UTF-8 nor GB18030 (GBK) text: pass encoding=")


def _read_csv(text: str, budget: ReadBudget) -> list[list[str]]:
    """Every non-blank line's cells, the header's and any title lines' included."""
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(_table_part(text), delimiters=",\t;|")
    except csv.Error:
        dialect = csv.excel
    lines: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text, newline=""), dialect):
            if not row or not any(cell.strip() for cell in row):
                continue
            budget.data_row(len(lines) - 1)
            lines.append(budget.row(row, f"line {len(lines) + 1}"))
    except csv.Error as exc:
        raise UnreadableFile(f"not a readable CSV file: {exc}") from exc
    return lines


def _table_part(text: str) -> str:
    """A sample for the delimiter sniffer: title lines hold no delimiters, so the sample starts at the first
    line that has some."""
    lines = text[:16384].splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if any(d in line for d in ",\t;|")), 0)
    return "".join(lines[start:])[:8192]


def _read_jsonl(text: str, budget: ReadBudget) -> tuple[list[str], list[list[str]]]:
    objects: list[dict] = []
    keys: dict[str, None] = {}
    for number, line in enumerate(text.split("\n"), 1):  # only newlines end a line (not U+2028 in a value)
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UnreadableFile(f"line {number} is not JSON: {exc.msg}") from exc
        except RecursionError as exc:  # a short line can nest deeper than the parser recurses
            raise UnreadableFile(f"line {number} nests too deeply") from exc
        if not isinstance(value, dict):
            raise UnreadableFile(f"line {number} is not a JSON object")
        budget.data_row(len(objects))
        keys.update(dict.fromkeys(value))
        budget.row(list(keys), "the keys of the lines")  # the header: distinct keys, bounded like columns
        budget.row([_cell(cell) for cell in value.values()], f"line {number}")
        objects.append(value)
    header = list(keys)
    return header, [[_cell(value.get(key)) for key in header] for value in objects]


def _read_xlsx(data: bytes, budget: ReadBudget) -> tuple[list[list[str]], list[list[str]]]:
    import openpyxl  # imported here: only uploads of spreadsheets pay for it

    check_archive(data, budget.limits)
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # a parser of untrusted bytes: any failure means the same
        raise UnreadableFile("not a readable XLSX workbook") from exc
    try:
        sheets = workbook.worksheets
        merged = merged_down(data, sheets[0]._worksheet_path, budget) if sheets else []
        return _xlsx_rows(workbook, MergedFill(merged), budget)
    except (TooManyRows, UnreadableFile):
        raise
    except Exception as exc:  # sheets are parsed lazily, so a broken one fails here
        raise UnreadableFile("not a readable XLSX workbook (a sheet is damaged)") from exc
    finally:
        workbook.close()


def _xlsx_rows(workbook, merged: MergedFill, budget: ReadBudget) -> tuple[list[list[str]], list[list[str]]]:
    """The first sheet's rows, from its first non-empty one, and each cell's stored type; empty rows count
    only where a row with text follows them (and every row read counts against the limit: a sheet can
    place one cell a million rows down). A merged title cell reads as its value in its first cell; a range
    merged over several rows reads as its value in each of its rows (``MergedDown``)."""
    if not workbook.worksheets:
        raise UnreadableFile("the workbook has no worksheet")
    sheet = workbook.worksheets[0]
    sheet.reset_dimensions()  # the sheet's own claim of its size is not read: rows are as wide as they are
    lines: list[list[str]] = []
    types: list[list[str]] = []
    blank_run: list[list[str]] = []
    for row_no, row in enumerate(sheet.iter_rows(values_only=True), 1):
        values = merged.fill(row_no, list(row))
        budget.data_row(len(lines) + len(blank_run) - 1)
        cells = budget.row([_cell(value) for value in values], f"row {len(lines) + len(blank_run) + 1}")
        if not any(cells):
            if lines:
                blank_run.append(cells)
            continue
        types += [[] for _ in blank_run] + [[_kind(value) for value in values]]
        lines += [*blank_run, cells]
        blank_run = []
    return lines, types


def _kind(value: object) -> str:
    """A cell's stored type: a date, a number (short enough to be an amount, not an account), text, empty."""
    if value is None or value == "":
        return "empty"
    if isinstance(value, datetime | date):
        return "date"
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e15:
        return "number"
    return "text"


def _cell(value: object) -> str:
    """A cell as text: a whole float without its ``.0`` (spreadsheets store codes as numbers)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _rectangular(header: list[str], rows: list[list[str]], limits: UploadLimits) -> tuple[list[str], list[list[str]]]:
    width = max([len(header), *(len(row) for row in rows)])
    if width * len(rows) > limits.max_cells:
        raise UnreadableFile(
            f"the table is {len(rows):,} rows of {width} columns; at most {limits.max_cells:,} cells are read"
        )
    columns = [name.strip() or f"column_{i + 1}" for i, name in enumerate(header + [""] * (width - len(header)))]
    return columns, [row + [""] * (width - len(row)) for row in rows]
