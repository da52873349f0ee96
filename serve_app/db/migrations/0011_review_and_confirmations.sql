-- People decide the rows the service was unsure of, once: a job row keeps the candidates it was answered
-- with, and a person's decision on it (a code, or "no such branch"), who made it and when. A decision is
-- also the tenant's confirmation of that text: the tenant's next answer to the same text is the decision.
ALTER TABLE api_keys ADD COLUMN label text CHECK (length(label) BETWEEN 1 AND 64);

ALTER TABLE job_rows
    ADD COLUMN choices      jsonb,            -- a row not answered match: its candidates, with evidence
    ADD COLUMN decided_code char(12),         -- NULL in a decided row: "no such branch in the directory"
    ADD COLUMN decided_by   text,
    ADD COLUMN decided_at   timestamptz,
    ADD CONSTRAINT job_rows_decision CHECK ((decided_at IS NULL) = (decided_by IS NULL)
                                            AND (decided_code IS NULL OR decided_at IS NOT NULL));
ALTER TABLE jobs ADD COLUMN decided_rows integer NOT NULL DEFAULT 0;
-- The review queue: a job's rows to decide, in order.
CREATE INDEX job_rows_review ON job_rows (job_id, row_no) WHERE verdict IN ('ambiguous', 'none');

CREATE TABLE confirmations (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant     text NOT NULL,
    text_key   text NOT NULL,           -- the text as answers are keyed: normalized words, and a code written
    text       text NOT NULL,           -- the text as it was written, for people
    code       char(12),                -- NULL: decided "no such branch in the directory"
    name       text,                    -- the record as decided: a later rename or move makes it stale
    city       text,
    decided_by text NOT NULL,
    decided_at timestamptz NOT NULL DEFAULT now(),
    job_id     uuid,                    -- where it was decided (the job may be deleted since)
    row_no     integer,
    CONSTRAINT confirmations_text UNIQUE (tenant, text_key),
    CONSTRAINT confirmations_record CHECK ((code IS NULL) = (name IS NULL))
);

-- An answer from a person's decision is logged as such.
ALTER TABLE query_log DROP CONSTRAINT query_log_source_check;
ALTER TABLE query_log ADD CONSTRAINT query_log_source_check CHECK (source IN ('cache', 'rules', 'model', 'confirmed'));
