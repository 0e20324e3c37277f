"""ClaimWaiters' waking arithmetic: a notification wakes, per type, only as many waiting
long polls as can take its new steps, eldest first; a woken waiter that leaves without
claiming passes its wake on."""

import contextlib
from collections.abc import Iterator

import pytest

from fleetq_server.runtime.claim_waiters import ClaimWaiter, ClaimWaiters

Stack = contextlib.ExitStack[bool | None]


@pytest.fixture
def stack() -> Iterator[Stack]:
    """Keeps the waiters a test registers registered until it ends."""
    with contextlib.ExitStack() as stack:
        yield stack


def register(
    stack: Stack,
    registry: ClaimWaiters,
    count: int,
    takes: int = 100,
    types: tuple[str, ...] = ("t",),
) -> list[ClaimWaiter]:
    """`count` waiters, registered in order (the first is the eldest)."""
    return [stack.enter_context(registry.watching(types, takes)) for _ in range(count)]


def woken(waiters: list[ClaimWaiter]) -> list[bool]:
    return [waiter.woken for waiter in waiters]


async def test_a_single_submit_wakes_one_of_many_waiters(stack: Stack) -> None:
    registry = ClaimWaiters()
    waiting = register(stack, registry, 500)

    registry.notify({"t": 1})

    assert sum(woken(waiting)) == 1
    assert waiting[0].woken  # the eldest


async def test_waiters_wake_until_their_claims_cover_the_new_steps(stack: Stack) -> None:
    registry = ClaimWaiters()
    waiting = register(stack, registry, 4, takes=100)

    registry.notify({"t": 150})

    assert woken(waiting) == [True, True, False, False]


async def test_a_waiter_already_woken_is_not_counted_again(stack: Stack) -> None:
    registry = ClaimWaiters()
    waiting = register(stack, registry, 3)

    registry.notify({"t": 1})
    registry.notify({"t": 1})

    assert woken(waiting) == [True, True, False]


async def test_only_waiters_of_the_notified_types_wake(stack: Stack) -> None:
    registry = ClaimWaiters()
    others = register(stack, registry, 2, types=("other",))
    both = register(stack, registry, 1, types=("t", "other"))

    registry.notify({"t": 5})

    assert woken(others) == [False, False]
    assert woken(both) == [True]


async def test_a_notification_of_any_type_wakes_every_waiter(stack: Stack) -> None:
    registry = ClaimWaiters()
    first = register(stack, registry, 3)
    second = register(stack, registry, 2, types=("u",))

    registry.notify(None)

    assert all(woken(first) + woken(second))


async def test_a_woken_waiter_that_leaves_before_claiming_passes_its_wake_on(stack: Stack) -> None:
    registry = ClaimWaiters()
    with registry.watching(["t"], 100):
        others = register(stack, registry, 2)
        registry.notify({"t": 1})
        assert woken(others) == [False, False]
    # it left, woken: its wait ran out, or its caller left

    assert woken(others) == [True, False]
    assert registry.waiting == 2


async def test_a_waiter_that_claimed_after_its_wake_passes_nothing_on(stack: Stack) -> None:
    registry = ClaimWaiters()
    with registry.watching(["t"], 100) as first:
        others = register(stack, registry, 1)
        registry.notify({"t": 1})
        first.begin_claim()  # it claimed the step

    assert woken(others) == [False]


async def test_a_waiter_woken_for_any_type_passes_nothing_on(stack: Stack) -> None:
    registry = ClaimWaiters()
    with registry.watching(["t"], 100):
        others = register(stack, registry, 1)
        registry.notify(None)
        others[0].begin_claim()
    # it left, woken by a notification that counted on no one (e.g. shutdown)

    assert woken(others) == [False]
