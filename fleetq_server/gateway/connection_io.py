"""Waiting on an ASGI connection: bytes shared by requests' bodies, and a handler run that
stops when its client leaves."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Coroutine
from typing import Any, TypeVar

from fleetq_server.gateway.asgi import Receive

T = TypeVar("T")


class Disconnected(Exception):
    """The client went away (ASGI `http.disconnect`) before it was answered."""


class ByteBudget:
    """Bytes shared by concurrent requests: `acquire` waits until enough are free.

    Everything runs on one event loop, so the count needs no lock: an acquire that fits
    and finds nobody waiting takes its bytes at once (every request pays that, so it must
    cost nothing); the others wait on futures that `release` resolves, in arrival order,
    for each waiter that then fits.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def acquire(self, size: int) -> None:
        if not self._waiters and self._used + size <= self._limit:
            self._used += size
            return
        waiter = (size, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter[1]
        except asyncio.CancelledError:
            if waiter[1].done() and not waiter[1].cancelled():
                self.release(size)  # granted, then cancelled before it could run: give back
            else:
                self._waiters.remove(waiter)
                self._grant()  # it may have been the one holding up smaller waiters
            raise

    def release(self, size: int) -> None:
        self._used -= size
        self._grant()

    def _grant(self) -> None:
        """Hand bytes to each waiter, oldest first, whose size now fits."""
        for waiter in list(self._waiters):
            size, future = waiter
            if self._used + size <= self._limit:
                self._waiters.remove(waiter)
                self._used += size
                future.set_result(None)


async def unless_disconnected(work: Coroutine[Any, Any, T], receive: Receive) -> T:
    """Run `work`, cancelling it if the client disconnects first (ASGI `http.disconnect`).

    A client that leaves (or times out) must not keep its database query running: the
    cancellation reaches asyncpg, which cancels the statement on the server. Called once
    the body has been read, so nothing else is waiting on `receive`.

    `work` runs in the calling task, and only the watcher is a task of its own: a second
    task for the work and asyncio.wait over both cost each request more than decoding it.
    """
    task = asyncio.current_task()
    assert task is not None, "called outside a task"
    watcher = asyncio.ensure_future(_disconnect(receive))
    cancelled_by_watcher = False

    def on_disconnect(done: asyncio.Future[None]) -> None:
        nonlocal cancelled_by_watcher
        if done.cancelled():
            return
        done.exception()  # retrieved: a receive() that fails means the client is gone too
        cancelled_by_watcher = True
        task.cancel()

    watcher.add_done_callback(on_disconnect)
    try:
        return await work
    except asyncio.CancelledError:
        # Ours (and no one else's, counting the requests): the work has unwound, so answer
        # nobody; any other cancellation goes on up.
        if cancelled_by_watcher:
            cancelled_by_watcher = False
            if task.uncancel() == 0:
                raise Disconnected from None
        raise
    finally:
        watcher.remove_done_callback(on_disconnect)
        watcher.cancel()
        if cancelled_by_watcher:  # the work finished anyway: drop the request we made
            task.uncancel()


async def _disconnect(receive: Receive) -> None:
    """Return when the client disconnects; body bytes arriving meanwhile are discarded."""
    while (await receive())["type"] != "http.disconnect":
        pass
