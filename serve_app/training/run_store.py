"""Training runs in PostgreSQL: what was asked, where it stands, and how it ended.

A run is created ``queued`` by the API, taken ``running`` by the Ray actor that trains it, and ends
``registered`` (the gate passed: a new revision serves), ``rejected`` (the gate's report says why) or
``failed`` (an error). Progress is written by the trainer at every step, with a heartbeat; a run whose
heartbeat is older than ``LOST_AFTER_S`` lost its trainer (a node went away) and is marked ``failed`` the
next time runs of its adapter are read or started. At most one run per adapter is queued or running (a
unique index); a tenant sees its own runs, the admin every run.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from serve_app.errors import TrainingInProgress, UnknownTrainingRun

#: A running run that has not written progress for this long lost its trainer.
LOST_AFTER_S = 600
RunState = Literal["queued", "running", "registered", "rejected", "failed"]
_COLUMNS = """id, adapter, tenant, state, steps, step, loss, eta_s, examples, revision, report, error, created_at,
              started_at, finished_at"""


class TrainingRunIn(BaseModel):
    """``POST /api/v1/adapters/{name}/training``."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=60, ge=1, le=2000, description="Optimizer steps (batches of 8 examples).")
    tenant: str | None = Field(
        default=None, max_length=64, description="Whose confirmations to learn: the admin names it; a key is its own."
    )


class TrainingRunOut(BaseModel):
    """``GET /api/v1/adapters/{name}/training/{run}``: a run's state, progress and gate report."""

    id: str
    adapter: str
    tenant: str
    state: RunState
    steps: int
    step: int
    loss: float | None
    eta_s: float | None = Field(description="Seconds of training left at the pace so far.")
    examples: int | None = Field(description="Training examples: the tenant's confirmations and directory records.")
    revision: int | None = Field(description="The revision registered, when the gate passed.")
    report: dict[str, Any] | None = Field(description="The gate's measurements and decision.")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> TrainingRunOut:
        report = json.loads(row["report"]) if row["report"] else None
        return cls(**dict(row) | {"id": str(row["id"]), "report": report})


class TrainingRunStore:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def create(self, adapter: str, tenant: str, steps: int) -> TrainingRunOut:
        """A new ``queued`` run; ``TrainingInProgress`` while another run of ``adapter`` is queued or running."""
        await self._mark_lost(adapter)
        try:
            row = await self.pool.fetchrow(
                f"""INSERT INTO training_runs (id, adapter, tenant, steps) VALUES ($1, $2, $3, $4)
                    RETURNING {_COLUMNS}""",  # noqa: S608 - constants only
                uuid.uuid4(),
                adapter,
                tenant,
                steps,
            )
        except asyncpg.UniqueViolationError as exc:
            raise TrainingInProgress(
                f"adapter {adapter!r} is being trained already: one run at a time (GET …/training lists it)"
            ) from exc
        return TrainingRunOut.from_row(row)

    async def get(self, adapter: str, run_id: str, tenant: str | None) -> TrainingRunOut:
        """The run (``tenant`` None: any tenant's, for the admin); ``UnknownTrainingRun`` otherwise."""
        await self._mark_lost(adapter)
        try:
            key = uuid.UUID(run_id)
        except ValueError as exc:
            raise UnknownTrainingRun(f"no training run {run_id[:40]!r}") from exc
        row = await self.pool.fetchrow(
            f"""SELECT {_COLUMNS} FROM training_runs
                WHERE id = $1 AND adapter = $2 AND ($3::text IS NULL OR tenant = $3)""",  # noqa: S608
            key,
            adapter,
            tenant,
        )
        if row is None:
            raise UnknownTrainingRun(f"no training run {run_id} of adapter {adapter!r} for this caller")
        return TrainingRunOut.from_row(row)

    async def recent(self, adapter: str, tenant: str | None, limit: int = 20) -> list[TrainingRunOut]:
        await self._mark_lost(adapter)
        rows = await self.pool.fetch(
            f"""SELECT {_COLUMNS} FROM training_runs WHERE adapter = $1 AND ($2::text IS NULL OR tenant = $2)
                ORDER BY created_at DESC LIMIT $3""",  # noqa: S608 - constants only
            adapter,
            tenant,
            limit,
        )
        return [TrainingRunOut.from_row(row) for row in rows]

    async def take(self, run_id: uuid.UUID) -> TrainingRunOut | None:
        """Mark a queued run ``running`` (the trainer, once); None when it is not queued (taken, or gone)."""
        row = await self.pool.fetchrow(
            f"""UPDATE training_runs SET state = 'running', started_at = now(), heartbeat_at = now()
                WHERE id = $1 AND state = 'queued' RETURNING {_COLUMNS}""",  # noqa: S608 - constants only
            run_id,
        )
        return None if row is None else TrainingRunOut.from_row(row)

    async def progress(self, run_id: uuid.UUID, step: int, loss: float, eta_s: float, examples: int) -> None:
        await self.pool.execute(
            """UPDATE training_runs SET step = $2, loss = $3, eta_s = $4, examples = $5, heartbeat_at = now()
               WHERE id = $1 AND state = 'running'""",
            run_id,
            step,
            loss,
            eta_s,
            examples,
        )

    async def finish(
        self,
        run_id: uuid.UUID,
        state: RunState,
        report: dict[str, Any] | None = None,
        revision: int | None = None,
        error: str | None = None,
    ) -> None:
        await self.pool.execute(
            """UPDATE training_runs SET state = $2, report = $3::jsonb, revision = $4, error = $5,
                      finished_at = now(), eta_s = 0
               WHERE id = $1""",
            run_id,
            state,
            None if report is None else json.dumps(report, ensure_ascii=False),
            revision,
            error,
        )

    async def _mark_lost(self, adapter: str) -> None:
        await self.pool.execute(
            """UPDATE training_runs SET state = 'failed', finished_at = now(),
                      error = 'the trainer stopped reporting, or never started (its node or process went away)'
               WHERE adapter = $1 AND (state = 'running' AND heartbeat_at < now() - make_interval(secs => $2)
                                       OR state = 'queued' AND created_at < now() - make_interval(secs => $2))""",
            adapter,
            float(LOST_AFTER_S),
        )
