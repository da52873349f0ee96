"""The service's logic behind HTTP: caches, rate limits, query log, the query flow. No Ray imports."""
