"""The query path: a request's inputs (``inputs``) → extraction → candidates in PostgreSQL (``retrieval``)
→ how each agrees with the query (``evidence``) → the verdict (``verdict``); ``pipeline`` runs it."""
