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
