"""PostgreSQL access: connection pools, schema migrations, the directory repository."""
