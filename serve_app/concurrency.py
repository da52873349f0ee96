"""Bounded fan-out: one function over many items, a few at a time, results in order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


async def map_bounded(function: Callable[[Item], Awaitable[Result]], items: Sequence[Item], limit: int) -> list[Result]:
    """``function`` over ``items`` with at most ``limit`` calls at once; the results in the items' order.
    The first exception raised is raised as itself (not in an ``ExceptionGroup``), the other calls cancelled."""
    slots = asyncio.Semaphore(limit)

    async def bounded(item: Item) -> Result:
        async with slots:
            return await function(item)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(bounded(item)) for item in items]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]
