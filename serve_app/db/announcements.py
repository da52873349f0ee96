"""Following a PostgreSQL ``NOTIFY`` channel on a connection of its own, reconnecting when it is lost.

A replica that polled the directory's version every few seconds answered from the snapshot before a load
for that long: cached answers naming codes the load had just retired among them. A load announces its new
version on commit (``directory.loader.LOADED_CHANNEL``); a replica that listens moves at once. Polling
stays as the fallback for a listener that is down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

log = logging.getLogger(__name__)


class Announcements:
    """Calls ``on_notice()`` (as a task) for every notification on ``channel``. ``ensure()`` (re)connects;
    the owner calls it periodically, so a lost connection is replaced by the next call."""

    def __init__(self, database_url: str, channel: str, on_notice: Callable[[], Awaitable[object]]):
        self.database_url = database_url
        self.channel = channel
        self.on_notice = on_notice
        self.conn: asyncpg.Connection | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def listening(self) -> bool:
        return self.conn is not None and not self.conn.is_closed()

    async def ensure(self, timeout_s: float = 2.0) -> None:
        """Listen if not listening (notices sent while there was no connection are lost: the owner's poll
        reads the state anyway)."""
        if self.listening:
            return
        await self.close()
        conn = await asyncpg.connect(
            self.database_url, timeout=timeout_s, server_settings={"application_name": "serve-app-listen"}
        )
        await conn.add_listener(self.channel, self._notified)
        self.conn = conn

    def _notified(self, conn: object, pid: int, channel: str, payload: str) -> None:
        task = asyncio.get_running_loop().create_task(self._call())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self) -> None:
        try:
            await self.on_notice()
        except Exception as exc:  # noqa: BLE001 - the poll catches up; a notice must not kill the loop
            log.warning("%s notice not followed: %s", self.channel, exc)

    async def close(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            try:
                await conn.close(timeout=1)
            except Exception:  # noqa: BLE001 - a connection already gone
                conn.terminate()
