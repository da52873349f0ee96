-- Every registration of a name is a new revision: replicas and caches key adapters by (name, revision), so
-- re-registering a name (new weights under the same name) is never answered with the old weights.
CREATE SEQUENCE adapter_revision;
ALTER TABLE adapters ADD COLUMN revision bigint;
UPDATE adapters SET revision = nextval('adapter_revision');
ALTER TABLE adapters ALTER COLUMN revision SET DEFAULT nextval('adapter_revision'),
                     ALTER COLUMN revision SET NOT NULL;
