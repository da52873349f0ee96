"""A throwaway directory for the evaluation benchmarks: embedded PostgreSQL with the shipped sample loaded."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from serve_app.db.migrate import apply_migrations
from serve_app.db.pool import connect_admin
from serve_app.directory.loader import load_directory
from serve_app.directory.records import demo_cnaps_path
from serve_app.ops.embedded import EmbeddedPostgres


@asynccontextmanager
async def sample_directory(prefix: str) -> AsyncIterator[tuple[str, list[dict]]]:
    """Yield (database URL, every branch row as a dict, by code); the server is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as home:
        server = EmbeddedPostgres(Path(home) / "postgres")
        url = server.start()
        try:
            conn = await connect_admin(url)
            try:
                await apply_migrations(conn)
                await load_directory(conn, demo_cnaps_path())
                records = [dict(r) for r in await conn.fetch("SELECT * FROM branches ORDER BY code")]
            finally:
                await conn.close()
            yield url, records
        finally:
            server.stop()
