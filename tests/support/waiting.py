"""Event-style waiting: poll a condition until it holds, instead of sleeping a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold in time; an AssertionError so pytest reports it as a failure."""


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.05,
    description: str = "condition",
) -> T:
    """Call ``condition`` until it returns something truthy and return that value.

    Returns as soon as the event happens (checks every ``interval`` seconds), so tests are as fast
    as the system under test; raises :class:`WaitTimeout` after ``timeout`` seconds. A condition
    may raise to abort the wait early (e.g. "the process died").
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {description}")
        time.sleep(min(interval, remaining))


# How long `until` waits: in-process work on the fake store takes milliseconds.
UNTIL_TIMEOUT_S = 5.0


async def until(condition: Callable[[], T | None], *, description: str = "condition") -> T:
    """``wait_until`` for async tests: checks at every turn of the event loop, so in-process
    work is seen the moment it happens, without blocking the loop that does it."""
    import asyncio

    try:
        async with asyncio.timeout(UNTIL_TIMEOUT_S):
            # Polling: the conditions are plain state of the code under test, with no event.
            while not (value := condition()):  # noqa: ASYNC110
                await asyncio.sleep(0.001)
    except TimeoutError:
        raise WaitTimeout(
            f"timed out after {UNTIL_TIMEOUT_S:g}s waiting for {description}"
        ) from None
    return value
