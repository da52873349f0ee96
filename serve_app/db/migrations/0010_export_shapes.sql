-- Statement exports as banks make them: the lines above the header are kept with the job, and rows that
-- are not transactions (totals, footers, no bank name) are kept in place as 'skipped', never asked.
ALTER TABLE job_rows DROP CONSTRAINT job_rows_verdict_check;
ALTER TABLE job_rows ADD CONSTRAINT job_rows_verdict_check
    CHECK (verdict IN ('match', 'ambiguous', 'none', 'skipped'));
ALTER TABLE jobs
    ADD COLUMN skipped_rows integer NOT NULL DEFAULT 0,
    ADD COLUMN title_lines  jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN header_line  integer NOT NULL DEFAULT 1;
-- Each input column's type (text, number, date), read from its transaction rows: the result workbook
-- writes dates as dates and amounts as numbers.
ALTER TABLE jobs ADD COLUMN column_kinds text[] NOT NULL DEFAULT '{}';
