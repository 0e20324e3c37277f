"""The receiving pod's claim made by the submit's insert itself (store/self_claim.py), on a
real PostgreSQL: taken only when the claim could take nothing but new steps, it keeps the
claim's order and announces exactly the new steps it leaves pending; otherwise the ordinary
claim decides, older waiting steps first.

A step claimed by its own insert has its claim's time equal to its creation time (both are
that transaction's `now()`); a claim made afterwards runs in a later transaction.
"""

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace

import pytest

from fleetq_server.store import Store
from fleetq_server.store.notifications import SubmitSubscription
from fleetq_server.store.records import NewStep
from fleetq_server.submission import prepare_step
from tests.integration.conftest import REQUEST

WAKE_TIMEOUT_S = 10.0
TYPES = ["mine", "also_mine"]


def new_step(**changes: object) -> NewStep:
    return prepare_step(replace(REQUEST, **{"type": "mine", **changes}))  # type: ignore[arg-type]


class Announced:
    """The step counts by type of every submit notification, in arrival order."""

    def __init__(self) -> None:
        self.counts: list[dict[str, int]] = []
        self._read = 0  # how many of them next() has returned
        self._arrived = asyncio.Event()

    def __call__(self, counts: Mapping[str, int] | None) -> None:
        self.counts.append(dict(counts or {}))
        self._arrived.set()

    async def next(self) -> dict[str, int]:
        """Wait for the notification after the last one returned; its counts."""
        while len(self.counts) == self._read:
            self._arrived.clear()
            await asyncio.wait_for(self._arrived.wait(), WAKE_TIMEOUT_S)
        self._read += 1
        return self.counts[self._read - 1]


@pytest.fixture
async def announced(database_url: str) -> AsyncIterator[Announced]:
    announced = Announced()
    subscription = SubmitSubscription(database_url, TYPES, lambda: None, on_counts=announced)
    assert await subscription.ensure()
    yield announced
    await subscription.close()


async def claim_rows(store: Store, *steps: NewStep) -> list[tuple[str, str | None, bool]]:
    """(status, claimed_by, claimed by its own insert) of each step."""
    async with store._connection() as connection:
        rows = await connection.fetch(
            "SELECT step_id, status, claimed_by, claimed_ts = created_ts AS at_insert"
            " FROM fleetq_steps WHERE step_id = ANY($1::text[])",
            [step.step_id for step in steps],
        )
    rows_by_id = {row["step_id"]: row for row in rows}
    found = [rows_by_id[step.step_id] for step in steps]
    return [(row["status"], row["claimed_by"], bool(row["at_insert"])) for row in found]


async def test_an_idle_pod_claims_a_new_step_in_its_insert_and_announces_nothing(
    store: Store, announced: Announced
) -> None:
    await store.pod_register("pod-a", 8)
    step = new_step()
    _, claimed, _ = await store.step_insert_claim([step], "pod-a", TYPES, 1)
    assert claimed is not None and [(c.step_id, c.attempt) for c in claimed] == [(step.step_id, 1)]
    assert await claim_rows(store, step) == [("claimed", "pod-a", True)]
    # Notifications arrive in commit order: the next one is this later submit's own.
    await store.step_insert_many([new_step(type="also_mine")])
    assert await announced.next() == {"also_mine": 1}


async def test_beyond_the_free_slots_the_best_new_steps_are_claimed_and_the_rest_announced(
    store: Store, announced: Announced
) -> None:
    await store.pod_register("pod-a", 8)
    low, high, middle = new_step(priority=0), new_step(priority=9), new_step(priority=5)
    _, claimed, _ = await store.step_insert_claim([low, high, middle], "pod-a", TYPES, 2)
    assert claimed is not None and [c.step_id for c in claimed] == [high.step_id, middle.step_id]
    assert await claim_rows(store, high, middle, low) == [
        ("claimed", "pod-a", True),
        ("claimed", "pod-a", True),
        ("pending", None, False),
    ]
    assert await announced.next() == {"mine": 1}


async def test_a_waiting_step_of_another_of_the_pods_types_is_claimed_first(
    store: Store, announced: Announced
) -> None:
    await store.pod_register("pod-a", 8)
    waiting = new_step(type="also_mine", priority=3)
    await store.step_insert_many([waiting])
    assert await announced.next() == {"also_mine": 1}
    step = new_step(priority=3)
    _, claimed, _ = await store.step_insert_claim([step], "pod-a", TYPES, 1)
    assert claimed is not None and [c.step_id for c in claimed] == [waiting.step_id]
    assert await claim_rows(store, waiting, step) == [
        ("claimed", "pod-a", False),
        ("pending", None, False),
    ]
    assert await announced.next() == {"mine": 1}


async def test_steps_not_yet_due_do_not_keep_the_insert_from_claiming(store: Store) -> None:
    await store.pod_register("pod-a", 8)
    later = new_step(delay_s=3600.0)
    await store.step_insert_many([later])
    step = new_step()
    _, claimed, _ = await store.step_insert_claim([step, new_step(delay_s=60.0)], "pod-a", TYPES, 2)
    assert claimed is not None and [c.step_id for c in claimed] == [step.step_id]
    assert await claim_rows(store, step, later) == [
        ("claimed", "pod-a", True),
        ("pending", None, False),
    ]


async def test_a_pod_that_is_down_inserts_pending_and_announces_them(
    store: Store, announced: Announced
) -> None:
    await store.pod_register("pod-a", 8)
    await store.pod_mark_down("pod-a")
    step = new_step()
    _, claimed, _ = await store.step_insert_claim([step], "pod-a", TYPES, 1)
    assert claimed == []
    assert await claim_rows(store, step) == [("pending", None, False)]
    assert await announced.next() == {"mine": 1}
