-- Training a tenant's adapter from its confirmations: one row per run, its progress written by the Ray
-- actor that trains it (so that a run outlives the ingress that started it), its gate report at the end.
CREATE TABLE training_runs (
    id           uuid PRIMARY KEY,
    adapter      text NOT NULL,
    tenant       text NOT NULL,                    -- whose confirmations it learns
    state        text NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'registered', 'rejected', 'failed')),
    steps        integer NOT NULL CHECK (steps > 0),
    step         integer NOT NULL DEFAULT 0,
    loss         real,
    eta_s        real,
    examples     integer,
    revision     integer,                          -- the revision registered (state 'registered')
    report       jsonb,                            -- the gate's measurements and decision
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    heartbeat_at timestamptz                       -- written with every step: a silent run was lost
);
-- At most one run per adapter at a time.
CREATE UNIQUE INDEX training_runs_one_active ON training_runs (adapter) WHERE state IN ('queued', 'running');
CREATE INDEX training_runs_adapter_created ON training_runs (adapter, created_at DESC);
