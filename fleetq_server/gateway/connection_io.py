"""Waiting on an ASGI connection: bytes shared by requests' bodies, and a handler run that
stops when its client leaves."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from fleetq_server.gateway.asgi import Receive

T = TypeVar("T")


class Disconnected(Exception):
    """The client went away (ASGI `http.disconnect`) before it was answered."""


class ByteBudget:
    """Bytes shared by concurrent requests: `acquire` waits until enough are free."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._freed = asyncio.Condition()

    async def acquire(self, size: int) -> None:
        async with self._freed:
            await self._freed.wait_for(lambda: self._used + size <= self._limit)
            self._used += size

    async def release(self, size: int) -> None:
        async with self._freed:
            self._used -= size
            self._freed.notify_all()


async def unless_disconnected(work: Coroutine[Any, Any, T], receive: Receive) -> T:
    """Run `work`, cancelling it if the client disconnects first (ASGI `http.disconnect`).

    A client that leaves (or times out) must not keep its database query running: the
    cancellation reaches asyncpg, which cancels the statement on the server. Called once
    the body has been read, so nothing else is waiting on `receive`.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(receive))
    try:
        done, _ = await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if task in done:
        watcher.cancel()
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)  # let it unwind before answering nobody
    raise Disconnected


async def _disconnect(receive: Receive) -> None:
    """Return when the client disconnects; body bytes arriving meanwhile are discarded."""
    while (await receive())["type"] != "http.disconnect":
        pass
