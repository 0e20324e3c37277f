"""LISTEN/NOTIFY wake-ups against a real PostgreSQL: a pod is woken by submits of the step
types it runs, by releases and requeues of any type, and not by other types' submits.

Notifications from different transactions arrive in commit order, so once the wake-up for a
later submit has arrived, an earlier one that did not wake the pod never will.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import replace

import pytest

from fleetq_server.store import Store
from fleetq_server.store.notifications import (
    MAX_NOTIFY_TYPES_CHARS,
    SubmitSubscription,
    submit_counts,
)
from fleetq_server.store.records import NewStep
from fleetq_server.store.step_copy import COPY_MIN_STEPS
from fleetq_server.submission import prepare_step
from tests.integration.conftest import REQUEST

WAKE_TIMEOUT_S = 10.0


class Wakeups:
    """Counts wake-ups and lets a test wait for the next one."""

    def __init__(self) -> None:
        self.count = 0
        self._event = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self._event.set()

    async def next(self) -> int:
        """Wait for a wake-up; the count so far."""
        await asyncio.wait_for(self._event.wait(), WAKE_TIMEOUT_S)
        self._event.clear()
        return self.count


@pytest.fixture
async def wakeups(database_url: str) -> AsyncIterator[Wakeups]:
    wakeups = Wakeups()
    subscription = SubmitSubscription(database_url, ["mine", "also_mine"], wakeups)
    assert await subscription.ensure()
    yield wakeups
    await subscription.close()


async def submit(store: Store, *types: str) -> None:
    await store.step_insert_many([prepare_step(replace(REQUEST, type=t)) for t in types])


async def test_submits_of_other_types_do_not_wake_the_pod(store: Store, wakeups: Wakeups) -> None:
    await submit(store, "theirs", "theirs_too")
    await submit(store, "mine")
    assert await wakeups.next() == 1


async def test_a_batch_that_holds_one_of_the_pods_types_wakes_it(
    store: Store, wakeups: Wakeups
) -> None:
    await submit(store, "theirs", "also_mine", "theirs")
    assert await wakeups.next() == 1


async def test_a_batch_with_too_many_types_to_list_wakes_every_pod(
    store: Store, wakeups: Wakeups
) -> None:
    many = [f"theirs_{n:04d}_{'x' * 100}" for n in range(MAX_NOTIFY_TYPES_CHARS // 100)]
    await submit(store, *many)
    assert await wakeups.next() == 1


async def test_releases_wake_pods_whatever_the_type(store: Store, wakeups: Wakeups) -> None:
    await store.pod_register("pod-a", 4)
    await submit(store, "theirs")
    claimed = await store.step_claim_batch("pod-a", ["theirs"], 1)
    assert await store.step_release(claimed, "pod-a") == [claimed[0].step_id]
    assert await wakeups.next() == 1


async def counts_heard(database_url: str, insert: Awaitable[object]) -> Mapping[str, int] | None:
    """The per-type counts a subscriber hears for what `insert` adds."""
    heard: asyncio.Queue[Mapping[str, int] | None] = asyncio.Queue()
    subscription = SubmitSubscription(database_url, [], lambda: None, heard.put_nowait)
    assert await subscription.ensure()
    try:
        await insert
        return await asyncio.wait_for(heard.get(), WAKE_TIMEOUT_S)
    finally:
        await subscription.close()


async def test_a_batch_notifies_how_many_steps_of_each_type_it_added(
    store: Store, database_url: str
) -> None:
    counts = await counts_heard(database_url, submit(store, "mine", "theirs", "mine", "mine"))
    assert counts == {"mine": 3, "theirs": 1}


async def test_a_large_batch_notifies_how_many_steps_of_each_type_it_added(
    store: Store, database_url: str
) -> None:
    """A large batch of plain steps goes by COPY (store/step_copy.py), with its own NOTIFY."""
    types = [*["mine"] * COPY_MIN_STEPS, "theirs"]
    steps = [prepare_step(replace(REQUEST, type=t)) for t in types]

    async def parts() -> AsyncIterator[list[NewStep]]:
        yield steps[:40]
        yield steps[40:]

    counts = await counts_heard(database_url, store.step_copy_parts(parts()))
    assert counts == {"mine": COPY_MIN_STEPS, "theirs": 1}


async def test_a_pod_of_the_previous_version_still_reads_the_types(
    store: Store, database_url: str
) -> None:
    """It split the payload on commas and woke for any type it runs."""
    payloads: asyncio.Queue[str] = asyncio.Queue()

    class Raw(SubmitSubscription):
        def on_payload(self, payload: str) -> None:
            payloads.put_nowait(payload)

    subscription = Raw(database_url, [], lambda: None)
    assert await subscription.ensure()
    try:
        await submit(store, "mine", "mine", "theirs")
        payload = await asyncio.wait_for(payloads.get(), WAKE_TIMEOUT_S)
    finally:
        await subscription.close()

    assert {"mine", "theirs"} <= set(payload.split(","))
    assert submit_counts(payload) == {"mine": 2, "theirs": 1}
