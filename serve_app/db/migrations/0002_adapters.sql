-- The adapter registry: per-tenant LoRA adapters the model replicas may load.
CREATE TABLE adapters (
    name       text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    base_model text NOT NULL,                 -- the base the adapter was trained on (from its config)
    path       text NOT NULL,                 -- folder relative to the adapter root
    rank       integer NOT NULL CHECK (rank > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
