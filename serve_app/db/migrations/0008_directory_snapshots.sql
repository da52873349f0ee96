-- The directory as a series of dated snapshots (serve_app.directory.snapshots): a code that leaves the
-- published file is retired, never deleted; what changed between loads is kept; every load is recorded.
ALTER TABLE branches
    ADD COLUMN clearing_code   char(12) CHECK (clearing_code ~ '^[0-9]{12}$'),  -- 清算行号 (BankId), checked
    ADD COLUMN retired_on      date,                        -- the as-of date of the snapshot it left
    ADD COLUMN retired_version bigint,                      -- the data version of that load
    ADD COLUMN added_version   bigint;                      -- the data version of the load that added it
CREATE INDEX branches_retired ON branches (retired_version) WHERE retired_on IS NOT NULL;

-- One row per load: which snapshot the directory is as of, and what the load changed.
CREATE TABLE directory_loads (
    data_version bigint PRIMARY KEY,
    as_of        date NOT NULL,
    mode         text NOT NULL CHECK (mode IN ('snapshot', 'partial', 'synthetic')),
    source       text NOT NULL,                   -- the file's name, or 'synthetic'
    sha256       text,                            -- of the file loaded
    rows_read    integer NOT NULL,
    counts       jsonb NOT NULL,                  -- {new, retired, returned, renamed, moved, changed, unchanged}
    loaded_at    timestamptz NOT NULL DEFAULT now()
);

-- What each load changed, code by code: old and new values of the fields that changed.
CREATE TABLE directory_changes (
    id           bigserial PRIMARY KEY,
    data_version bigint NOT NULL REFERENCES directory_loads (data_version),
    as_of        date NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('new', 'retired', 'returned', 'renamed', 'moved', 'changed')),
    code         char(12) NOT NULL,
    bank_name    text NOT NULL,
    city         text NOT NULL,
    old          jsonb,
    new          jsonb
);
CREATE INDEX directory_changes_version ON directory_changes (data_version, id);
CREATE INDEX directory_changes_as_of ON directory_changes (as_of, id);
CREATE INDEX directory_changes_code ON directory_changes (code, data_version);

-- Job rows remember the directory they were answered from (recheck compares with today's).
ALTER TABLE job_rows
    ADD COLUMN clearing_code   char(12),
    ADD COLUMN data_version    bigint,
    ADD COLUMN directory_as_of date;
