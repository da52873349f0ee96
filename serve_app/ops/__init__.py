"""Running the service: embedded PostgreSQL and Valkey for development and tests (``embedded``), the
idempotent set-up of a deployment (``bootstrap``) and the ingress modes operators choose between."""
