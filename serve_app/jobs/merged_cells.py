"""Cells merged over several rows, read back as Excel shows them: the range's value in each of its rows.

Statement exports merge a date, or a counterparty's bank, over the consecutive transactions that share it.
Excel stores the value in the range's first cell only; read as stored, every row but the first would have
a blank bank cell and be skipped as no transaction. A range one row high (a merged title) is left as it
is: its value in its first cell. Read-only openpyxl does not expose merged ranges, so they are read from the
sheet's XML with openpyxl's own parser (defusedxml when it is installed). A crafted sheet can list millions
of ranges or one range over a million rows: their count and the cells they cover are bounded.
"""

from __future__ import annotations

import io
import zipfile
from collections import defaultdict
from dataclasses import dataclass

from serve_app.errors import UnreadableFile
from serve_app.jobs.read_limits import ReadBudget

#: Merged ranges read from one sheet; past this many the file is refused.
MAX_MERGED_RANGES = 10_000
#: XML elements parsed between looks at the read's clock.
_CLOCK_EVERY = 10_000


@dataclass(frozen=True)
class MergedDown:
    """A merged range that spans rows: 1-based, inclusive."""

    first_row: int
    last_row: int
    first_column: int
    last_column: int

    @property
    def cells(self) -> int:
        return (self.last_row - self.first_row + 1) * (self.last_column - self.first_column + 1)


def merged_down(data: bytes, worksheet_path: str, budget: ReadBudget) -> list[MergedDown]:
    """The sheet's merged ranges that span more than one row. ``UnreadableFile`` past ``MAX_MERGED_RANGES``
    ranges, when they cover more cells together than the table may have (the work of filling them), or
    past the read's deadline."""
    max_cells = budget.limits.max_cells
    from openpyxl.utils.cell import range_boundaries
    from openpyxl.xml.functions import iterparse

    ranges: list[MergedDown] = []
    covered = 0
    with zipfile.ZipFile(io.BytesIO(data)) as archive, archive.open(worksheet_path) as part:
        for parsed, (_, element) in enumerate(iterparse(part)):
            if parsed % _CLOCK_EVERY == 0:
                budget.check_clock()
            if element.tag.endswith("}mergeCell"):
                if len(ranges) >= MAX_MERGED_RANGES:
                    raise UnreadableFile(f"the sheet merges more than {MAX_MERGED_RANGES:,} ranges of cells")
                first_column, first_row, last_column, last_row = range_boundaries(element.get("ref", ""))
                if last_row > first_row:
                    span = MergedDown(first_row, last_row, first_column, last_column)
                    covered += span.cells
                    if covered > max_cells:
                        raise UnreadableFile(f"the sheet's merged cells cover more than {max_cells:,} cells")
                    ranges.append(span)
            element.clear()
    return ranges


class MergedFill:
    """Fills rows as they are read, in order: ``fill(row_no, values)``. Work per row is the ranges open on
    it, and over a sheet the cells they cover (bounded by ``merged_down``)."""

    def __init__(self, ranges: list[MergedDown]):
        self._starting: dict[int, list[MergedDown]] = defaultdict(list)
        for span in ranges:
            self._starting[span.first_row].append(span)
        self._open: list[tuple[MergedDown, object]] = []

    def fill(self, row_no: int, values: list) -> list:
        """``values`` (row ``row_no``, 1-based) with its empty cells inside an open range given the value of
        that range's first cell."""
        self._open = [(span, top) for span, top in self._open if span.last_row >= row_no]
        for span, top in self._open:
            values = values + [None] * (span.last_column - len(values))
            for column in range(span.first_column - 1, span.last_column):
                if values[column] is None or values[column] == "":
                    values[column] = top
        for span in self._starting.pop(row_no, ()):
            top = values[span.first_column - 1] if span.first_column <= len(values) else None
            if top is not None and top != "":
                self._open.append((span, top))
        return values
