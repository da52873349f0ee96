-- Each answered query's verdict and reason, so operators can see how often the service was sure.
ALTER TABLE query_log ADD COLUMN verdict text CHECK (verdict IN ('match', 'ambiguous', 'none'));
ALTER TABLE query_log ADD COLUMN reason text;
