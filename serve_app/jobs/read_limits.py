"""Bounds on reading an uploaded file (``UploadLimits``), applied by ``jobs.files`` before and while it reads.

A small file must not cost much: an XLSX's parts are checked before it is parsed (their unpacked sizes
and compression ratios), lines of text before they are split, and every row as it is read — its width,
its cells' lengths and NULs, the number of rows (blank ones too) and the clock.
"""

from __future__ import annotations

import io
import time
import zipfile
from dataclasses import dataclass, field

from serve_app.config import UploadLimits
from serve_app.errors import TooManyRows, UnreadableFile

#: An XLSX part bigger than this must not unpack to more than ``_MAX_RATIO`` times its packed size: sheet
#: XML compresses 10–50×, a crafted part thousands of times.
_RATIO_CHECKED_ABOVE = 2**20
_MAX_RATIO = 200
_MAX_PARTS = 1000
#: Rows between two looks at the clock.
_CLOCK_EVERY = 512


@dataclass
class ReadBudget:
    """What one read may still spend; every row read passes through ``row``."""

    limits: UploadLimits
    max_rows: int
    deadline: float = field(init=False)
    rows: int = 0

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.limits.parse_timeout_s

    def row(self, cells: list[str], where: str) -> list[str]:
        """``cells`` checked: its width, each cell's length and characters; and the clock."""
        limits = self.limits
        if len(cells) > limits.max_columns:
            raise UnreadableFile(f"{where} has {len(cells):,} columns; at most {limits.max_columns} are read")
        for cell in cells:
            if len(cell) > limits.max_cell_chars:
                raise UnreadableFile(
                    f"{where} has a cell of {len(cell):,} characters; at most {limits.max_cell_chars:,} are read"
                )
            if "\x00" in cell:
                raise UnreadableFile(f"{where} holds a NUL character, which no statement text has")
        self.rows += 1
        if self.rows % _CLOCK_EVERY == 0:
            self.check_clock()
        return cells

    def check_clock(self) -> None:
        """``UnreadableFile`` once the read has taken longer than ``parse_timeout_s``."""
        if time.monotonic() > self.deadline:
            raise UnreadableFile(f"the file takes longer than {self.limits.parse_timeout_s:g} s to read")

    def data_row(self, counted: int) -> None:
        """Before a data row (``counted`` so far, blank ones included): ``TooManyRows`` past the limit."""
        if counted >= self.max_rows:
            raise TooManyRows(f"at most {self.max_rows} rows per job")


def check_lines(text: str, limits: UploadLimits) -> None:
    """``UnreadableFile`` for a line longer than ``max_line_chars`` (before any parsing)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if end - start > limits.max_line_chars:
            line = text.count("\n", 0, start) + 1
            raise UnreadableFile(f"line {line} has over {limits.max_line_chars:,} characters")
        start = end + 1


def check_archive(data: bytes, limits: UploadLimits) -> None:
    """An XLSX is a zip: its parts' unpacked sizes (which bound what reading them yields) checked first."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise UnreadableFile("not a readable XLSX workbook (a damaged zip)") from exc
    if len(parts) > _MAX_PARTS:
        raise UnreadableFile(f"the workbook has {len(parts):,} parts; at most {_MAX_PARTS} are read")
    unpacked = sum(part.file_size for part in parts)
    if unpacked > limits.max_uncompressed_bytes:
        raise UnreadableFile(
            f"the workbook unpacks to {unpacked:,} bytes; at most {limits.max_uncompressed_bytes:,} are read"
        )
    for part in parts:
        if part.file_size > _RATIO_CHECKED_ABOVE and part.file_size > _MAX_RATIO * max(part.compress_size, 1):
            raise UnreadableFile(f"the workbook's part {part.filename!r} unpacks {part.file_size:,} bytes from "
                                 f"{part.compress_size:,}: not a spreadsheet's ratio")  # fmt: skip
