"""ByteBudget: bytes in flight shared by requests on one event loop."""

import asyncio

import pytest

from fleetq_server.gateway.connection_io import ByteBudget


async def test_an_acquire_that_fits_returns_without_waiting() -> None:
    acquiring = ByteBudget(10).acquire(10)
    with pytest.raises(StopIteration):  # finishes on its first step: it never suspends
        acquiring.send(None)


async def test_a_waiter_proceeds_once_enough_bytes_are_released() -> None:
    budget = ByteBudget(10)
    await budget.acquire(8)
    waiter = asyncio.ensure_future(budget.acquire(5))
    await asyncio.sleep(0)
    assert not waiter.done()
    budget.release(8)
    await asyncio.wait_for(waiter, 1)
    assert not asyncio.ensure_future(budget.acquire(6)).done()  # 5 of 10 are held


async def test_a_small_waiter_may_pass_a_large_one_that_does_not_fit() -> None:
    budget = ByteBudget(10)
    await budget.acquire(3)
    await budget.acquire(3)
    large = asyncio.ensure_future(budget.acquire(10))
    small = asyncio.ensure_future(budget.acquire(5))
    await asyncio.sleep(0)
    assert not small.done()
    budget.release(3)
    await asyncio.wait_for(small, 1)
    assert not large.done()
    large.cancel()


async def test_a_cancelled_waiter_takes_no_bytes_and_unblocks_the_rest() -> None:
    budget = ByteBudget(10)
    await budget.acquire(6)
    large = asyncio.ensure_future(budget.acquire(10))
    small = asyncio.ensure_future(budget.acquire(4))
    await asyncio.sleep(0)
    large.cancel()
    await asyncio.wait_for(small, 1)
    budget.release(6)
    budget.release(4)
    await asyncio.wait_for(budget.acquire(10), 1)


async def test_a_waiter_cancelled_after_its_grant_gives_its_bytes_back() -> None:
    budget = ByteBudget(10)
    await budget.acquire(10)
    waiter = asyncio.ensure_future(budget.acquire(10))
    await asyncio.sleep(0)
    budget.release(10)  # granted: the future is resolved, the task not yet resumed
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.wait_for(budget.acquire(10), 1)
