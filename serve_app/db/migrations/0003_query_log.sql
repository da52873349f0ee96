-- One row per answered query, written in batches by the ingress replicas.
CREATE TABLE query_log (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    query       text NOT NULL,
    normalized  text NOT NULL,
    source      text NOT NULL CHECK (source IN ('cache', 'rules', 'model')),
    model       text,
    top_code    char(12),
    matches     integer NOT NULL,
    latency_ms  real NOT NULL,
    client      text
);
CREATE INDEX query_log_created_at ON query_log (created_at);
