"""The leader's recovery loop wakes when a live pod's heartbeat is due to expire, measured
by the database clock; heartbeats are backdated with test-only SQL."""

import pytest

from fleetq_server.runtime.recovery import EXPIRY_MARGIN_S, MIN_WAIT_S, RecoveryLoop
from fleetq_server.runtime.state import PodState
from fleetq_server.store import Store
from fleetq_server.store.recovery import RECOVERY_LOCK_KEY
from tests.support.backdating import age_heartbeat

THRESHOLD_S = 12.0
INTERVAL_S = 60.0


@pytest.fixture(autouse=True)
async def pods(store: Store) -> None:
    for pod_id in ("leader", "other"):
        await store.pod_register(pod_id, 4)


def recovery_loop(store: Store, *, on_expiry: bool, is_leader: bool = True) -> RecoveryLoop:
    state = PodState(base_pod_id="leader", max_capacity=4, is_leader=is_leader, database_ok=True)
    return RecoveryLoop(store, state, INTERVAL_S, THRESHOLD_S, on_expiry=on_expiry)


async def test_the_leader_wakes_just_after_a_pod_expires_instead_of_a_whole_interval(
    store: Store,
) -> None:
    await age_heartbeat(store, "other", THRESHOLD_S - 2)
    loop = recovery_loop(store, on_expiry=True)
    await loop.run_once()
    assert 1.0 + EXPIRY_MARGIN_S < loop.next_wait() <= 2.0 + EXPIRY_MARGIN_S


async def test_without_on_expiry_the_leader_keeps_its_interval(store: Store) -> None:
    await age_heartbeat(store, "other", THRESHOLD_S - 2)
    loop = recovery_loop(store, on_expiry=False)
    await loop.run_once()
    assert loop.next_wait() == INTERVAL_S


async def test_a_follower_keeps_its_interval(store: Store) -> None:
    await age_heartbeat(store, "other", THRESHOLD_S - 2)
    loop = recovery_loop(store, on_expiry=True, is_leader=False)
    await loop.run_once()
    assert loop.next_wait() == INTERVAL_S


async def test_a_skipped_cycle_with_a_stale_pod_retries_soon_without_spinning(
    store: Store,
) -> None:
    await age_heartbeat(store, "other", THRESHOLD_S + 1)
    loop = recovery_loop(store, on_expiry=True)
    async with store._transaction() as connection:  # another pod's cycle holds the lock
        await connection.execute("SELECT pg_advisory_xact_lock($1)", RECOVERY_LOCK_KEY)
        await loop.run_once()
    assert loop.next_wait() == MIN_WAIT_S
    await loop.run_once()  # the lock is free: this cycle marks the stale pod down
    assert await store.pod_next_expiry(THRESHOLD_S) is not None  # the leader alone is up
    assert THRESHOLD_S - 1 < loop.next_wait() <= THRESHOLD_S + EXPIRY_MARGIN_S
