"""unless_disconnected: the work runs until done, or until its client leaves."""

import asyncio
from typing import Any

import pytest

from fleetq_server.gateway.connection_io import Disconnected, unless_disconnected


class Client:
    """An ASGI receive() that reports a disconnect once `leave()` is called."""

    def __init__(self) -> None:
        self._left = asyncio.Event()

    def leave(self) -> None:
        self._left.set()

    async def receive(self) -> dict[str, Any]:
        await self._left.wait()
        return {"type": "http.disconnect"}


async def test_the_works_result_is_returned_while_the_client_stays() -> None:
    async def work() -> int:
        await asyncio.sleep(0)
        return 7

    assert await unless_disconnected(work(), Client().receive) == 7
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0


async def test_a_client_leaving_cancels_the_work_and_waits_for_it_to_unwind() -> None:
    client = Client()
    started, unwound = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            unwound.set()

    async def leave_once_started() -> None:
        await started.wait()
        client.leave()

    leaving = asyncio.ensure_future(leave_once_started())
    with pytest.raises(Disconnected):
        await unless_disconnected(work(), client.receive)
    assert unwound.is_set()
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0  # the caller may go on
    await leaving


async def test_cancelling_the_caller_cancels_the_work_and_is_not_a_disconnect() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    caller = asyncio.ensure_future(unless_disconnected(work(), Client().receive))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert cancelled.is_set()


async def test_the_works_error_reaches_the_caller() -> None:
    async def work() -> None:
        await asyncio.sleep(0)
        raise LookupError("no such step")

    with pytest.raises(LookupError, match="no such step"):
        await unless_disconnected(work(), Client().receive)
