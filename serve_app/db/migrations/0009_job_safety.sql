-- Bulk jobs shared by many tenants: a client's retry after a commit it did not see finds its job again
-- (an idempotency key per tenant), and a result workbook is built once and kept.
ALTER TABLE jobs
    ADD COLUMN idempotency_key text CHECK (length(idempotency_key) <= 128),
    ADD COLUMN result_xlsx     bytea;
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The retention sweep deletes by age.
CREATE INDEX jobs_created ON jobs (created_at);
