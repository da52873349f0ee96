"""Reading an uploaded statement file into a table: CSV, XLSX or JSON lines, the header, the text column.

Statement exports are CSV in UTF-8 or GBK, or XLSX; programs send JSON lines. The format is what the
caller says, else what the bytes are (an XLSX is a zip; JSON lines start with ``{``), else CSV. Text
without a stated encoding is read as UTF-8 (a BOM is dropped), else GB18030 (a superset of GBK, which
is what Chinese banking software writes). The text column is named (header) or numbered (1-based), or
else the first header that names a bank (``对方行名``, ``开户行``, ``bank`` …). Everything wrong with a file
is an ``UnreadableFile`` naming the problem; too many rows is ``TooManyRows``. No row is dropped: a short
row is padded, a long one widens the header. A CSV blank line is no row.

Files come from outside, so reading is bounded before and while it happens (``UploadLimits``): an XLSX's
unpacked size and each part's compression ratio are checked before it is parsed, and its sheet's claimed
dimensions are ignored; every row read counts (blank ones too), its width, its cells' lengths and NULs
(which PostgreSQL cannot store) are checked as it is read; lines of text are bounded; and the whole read
has a deadline. A file past a limit is refused with the limit named, before any work is done on its rows.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Literal

from serve_app.config import UploadLimits
from serve_app.errors import TooManyRows, UnreadableFile
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
#: Headers that hold the counterparty's bank, most specific first (compared case- and space-insensitively).
BANK_COLUMN_NAMES = (
    "对方行名",
    "对方开户行",
    "对方开户行名称",
    "对方开户银行",
    "收款人开户行",
    "收款行",
    "收款行名称",
    "付款人开户行",
    "付款行",
    "开户行",
    "开户行名称",
    "开户银行",
    "银行名称",
    "行名",
    "支行名称",
    "bank name",
    "bank_name",
    "bank",
    "branch",
    "query",
)
_XLS_MAGIC = b"\xd0\xcf\x11\xe0"
_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class InputTable:
    """A file as rows of text cells under a header; ``text_column`` indexes the cell to look up."""

    format: Format
    columns: list[str]
    rows: list[list[str]]
    text_column: int

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
    if kind == "xlsx":
        header, rows = _read_xlsx(data, budget)
    else:
        text = _decode(data, encoding)
        check_lines(text, budget.limits)
        header, rows = _read_jsonl(text, budget) if kind == "jsonl" else _read_csv(text, budget)
    columns, rows = _rectangular(header, rows, budget.limits)
    return InputTable(kind, columns, rows, _text_column(columns, column))


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
    if b"\x00" in data[:65536]:
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
    raise UnreadableFile("the file is neither UTF-8 nor GBK/GB18030 text: pass encoding=")


def _read_csv(text: str, budget: ReadBudget) -> tuple[list[str], list[list[str]]]:
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], delimiters=",\t;|")
    except csv.Error:
        dialect = csv.excel
    rows: list[list[str]] = []
    try:
        reader = csv.reader(io.StringIO(text, newline=""), dialect)
        header = next(reader, None)
        if header is None:
            raise UnreadableFile("the file is empty: a header row is required")
        budget.row(header, "the header")
        for row in reader:
            if not row:
                continue
            budget.data_row(len(rows))
            rows.append(budget.row(row, f"row {len(rows) + 1}"))
    except csv.Error as exc:
        raise UnreadableFile(f"not a readable CSV file: {exc}") from exc
    return header, rows


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


def _read_xlsx(data: bytes, budget: ReadBudget) -> tuple[list[str], list[list[str]]]:
    import openpyxl  # imported here: only uploads of spreadsheets pay for it

    check_archive(data, budget.limits)
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # a parser of untrusted bytes: any failure means the same
        raise UnreadableFile("not a readable XLSX workbook") from exc
    try:
        return _xlsx_rows(workbook, budget)
    except (TooManyRows, UnreadableFile):
        raise
    except Exception as exc:  # sheets are parsed lazily, so a broken one fails here
        raise UnreadableFile("not a readable XLSX workbook (a sheet is damaged)") from exc
    finally:
        workbook.close()


def _xlsx_rows(workbook, budget: ReadBudget) -> tuple[list[str], list[list[str]]]:
    """The first sheet's header and rows; empty rows count only where a row with text follows them (and
    every row read counts against the limit: a sheet can place one cell a million rows down)."""
    if not workbook.worksheets:
        raise UnreadableFile("the workbook has no worksheet")
    sheet = workbook.worksheets[0]
    sheet.reset_dimensions()  # the sheet's own claim of its size is not read: rows are as wide as they are
    rows: list[list[str]] = []
    header: list[str] | None = None
    blank_run: list[list[str]] = []
    for values in sheet.iter_rows(values_only=True):
        if header is None:
            header = budget.row([_cell(value) for value in values], "the header")
            continue
        budget.data_row(len(rows) + len(blank_run))
        cells = budget.row([_cell(value) for value in values], f"row {len(rows) + len(blank_run) + 1}")
        if not any(cells):
            blank_run.append(cells)
            continue
        rows += [*blank_run, cells]
        blank_run = []
    if header is None:
        raise UnreadableFile("the workbook's first sheet is empty: a header row is required")
    return header, rows


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


def _text_column(columns: list[str], column: str | None) -> int:
    if column is not None and column.strip():
        wanted = column.strip()
        if wanted.isdigit():
            number = int(wanted)
            if not 1 <= number <= len(columns):
                raise UnreadableFile(f"column {number} does not exist: the file has {len(columns)} columns")
            return number - 1
        for index, name in enumerate(columns):
            if _key(name) == _key(wanted):
                return index
        raise UnreadableFile(f"no column named {wanted!r}; the columns are: {', '.join(columns)}")
    keys = [_key(name) for name in columns]
    for candidate in BANK_COLUMN_NAMES:
        if candidate in keys:
            return keys.index(candidate)
    raise UnreadableFile(
        f"no column looks like a bank name; pass column= (a header or a 1-based number). Columns: {', '.join(columns)}"
    )


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()
