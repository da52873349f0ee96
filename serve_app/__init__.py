"""Bank-branch query service: entity extraction, PostgreSQL retrieval, Ray Serve deployment."""

__version__ = "0.1.0"
