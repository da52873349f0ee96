-- Tenants' API keys. Only a SHA-256 of each key is stored: keys are 32 random bytes, so a plain hash is
-- enough (nothing to brute-force), and a database dump reveals no usable key.
CREATE TABLE api_keys (
    id         text PRIMARY KEY,                    -- the key's public prefix, shown by `keys list`
    key_hash   text NOT NULL UNIQUE,                -- hex SHA-256 of the whole key
    tenant     text NOT NULL CHECK (tenant ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    adapters   text[] NOT NULL DEFAULT '{}',        -- adapters this key may name
    rate_per_s real CHECK (rate_per_s > 0),         -- the tenant's rate limit; NULL: the service default
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant);

-- Bulk reconciliation jobs: one row per uploaded file, one job_rows row per input line.
CREATE TABLE jobs (
    id              uuid PRIMARY KEY,
    tenant          text NOT NULL,
    state           text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done')),
    filename        text NOT NULL,
    input_format    text NOT NULL CHECK (input_format IN ('csv', 'xlsx', 'jsonl')),
    columns         text[] NOT NULL,                -- the input's header, in order
    text_column     integer NOT NULL,               -- 0-based index into columns
    model           text,                           -- adapter named at submission (name@revision)
    total_rows      integer NOT NULL CHECK (total_rows >= 0),
    done_rows       integer NOT NULL DEFAULT 0,
    match_rows      integer NOT NULL DEFAULT 0,
    ambiguous_rows  integer NOT NULL DEFAULT 0,
    none_rows       integer NOT NULL DEFAULT 0,
    error_rows      integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    last_claimed_at timestamptz                     -- workers take chunks from the least recently served job
);
CREATE INDEX jobs_tenant_created ON jobs (tenant, created_at DESC);
CREATE INDEX jobs_active ON jobs (last_claimed_at NULLS FIRST) WHERE state IN ('queued', 'running');

CREATE TABLE job_rows (
    job_id        uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    row_no        integer NOT NULL,                 -- 0-based position in the input
    cells         text[] NOT NULL,                  -- the input row as read
    done          boolean NOT NULL DEFAULT false,
    verdict       text CHECK (verdict IN ('match', 'ambiguous', 'none')),
    code          char(12),
    official_name text,
    bank          text,
    city          text,
    confidence    real,
    reason        text,
    candidates    text,
    error         text,
    PRIMARY KEY (job_id, row_no)
);
-- Workers claim the first rows not yet done, in order.
CREATE INDEX job_rows_pending ON job_rows (job_id, row_no) WHERE NOT done;

-- Browsing the directory by province (bank, city and district have their indexes).
CREATE INDEX branches_province_city ON branches (province, city);
