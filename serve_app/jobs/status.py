"""Where a bulk job stands (``GET /api/v1/jobs/{id}``), read from its ``jobs`` row."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import asyncpg
from pydantic import BaseModel, Field

JOB_COLUMNS = """id, tenant, state, filename, input_format, columns, text_column, model, total_rows, done_rows,
                  match_rows, ambiguous_rows, none_rows, error_rows, skipped_rows, decided_rows, title_lines,
                  header_line, created_at, started_at, finished_at"""


class VerdictCounts(BaseModel):
    match: int
    ambiguous: int
    none: int
    error: int
    skipped: int = Field(description="Rows that are not transactions (totals, footers, no bank name): not asked.")


class JobStatus(BaseModel):
    """``GET /api/v1/jobs/{id}``: where a job stands."""

    id: str
    state: str = Field(description="queued, running or done.")
    filename: str
    format: str
    columns: list[str]
    text_column: str = Field(description="The column whose text is looked up.")
    header_line: int = Field(description="The header's line in the file (1-based): title lines come before it.")
    title_lines: list[list[str]] = Field(description="The lines above the header, as read (an export's title).")
    model: str | None
    total_rows: int
    done_rows: int
    progress: float = Field(description="done_rows / total_rows, 0 to 1.")
    counts: VerdictCounts
    decided_rows: int = Field(description="Rows a person has decided (GET …/review, POST …/rows/{n}/decision).")
    rows_per_s: float | None = Field(description="Since the first chunk was taken.")
    eta_s: float | None = Field(description="Seconds left at that rate.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> JobStatus:
        total, done = row["total_rows"], row["done_rows"]
        rate = eta = None
        answered = done - row["skipped_rows"]  # skipped rows are done at submission
        if row["started_at"] is not None and answered > 0:
            end = row["finished_at"] or datetime.now(UTC)
            seconds = max((end - row["started_at"]).total_seconds(), 1e-3)
            rate = round(answered / seconds, 1)
            eta = round((total - done) / rate, 1)
        return cls(
            id=str(row["id"]),
            state=row["state"],
            filename=row["filename"],
            format=row["input_format"],
            columns=list(row["columns"]),
            text_column=row["columns"][row["text_column"]],
            header_line=row["header_line"],
            title_lines=json.loads(row["title_lines"]),
            model=row["model"],
            total_rows=total,
            done_rows=done,
            progress=round(done / total, 4) if total else 1.0,
            counts=VerdictCounts(
                match=row["match_rows"],
                ambiguous=row["ambiguous_rows"],
                none=row["none_rows"],
                error=row["error_rows"],
                skipped=row["skipped_rows"],
            ),
            decided_rows=row["decided_rows"],
            rows_per_s=rate,
            eta_s=eta,
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )
