"""RecoveryLoop on the in-memory store: only the leader recovers, and it wakes when a
heartbeat is due to expire."""

import pytest

from fleetq_server import errors
from fleetq_server.runtime.recovery import EXPIRY_MARGIN_S, MIN_WAIT_S, RecoveryLoop
from fleetq_server.runtime.state import PodState
from tests.support.memory_store import MemoryStore
from tests.unit.runtime.helpers import claim_one

THRESHOLD_S = 12.0
INTERVAL_S = 60.0


def recovery(store: MemoryStore, state: PodState, on_expiry: bool = True) -> RecoveryLoop:
    return RecoveryLoop(store, state, INTERVAL_S, THRESHOLD_S, on_expiry=on_expiry)


async def test_the_leader_requeues_what_a_dead_pod_held(
    store: MemoryStore, state: PodState
) -> None:
    await store.pod_register("pod-b", 4)
    step = await claim_one(store, "pod-b")
    store.age_heartbeat("pod-b", THRESHOLD_S + 1)
    state.is_leader = True
    await recovery(store, state).run_once()
    record = await store.step_get(step.step_id)
    assert (record.status, record.retry_count, record.claimed_by) == ("pending", 1, None)
    assert store.pods["pod-b"].status == "down"


async def test_a_follower_recovers_nothing(store: MemoryStore, state: PodState) -> None:
    await store.pod_register("pod-b", 4)
    step = await claim_one(store, "pod-b")
    store.age_heartbeat("pod-b", THRESHOLD_S + 1)
    loop = recovery(store, state)
    await loop.run_once()
    assert (await store.step_get(step.step_id)).status == "claimed"
    assert loop.next_wait() == INTERVAL_S


async def test_the_leader_wakes_just_after_a_pod_expires(
    store: MemoryStore, state: PodState
) -> None:
    await store.pod_register("pod-b", 4)
    store.age_heartbeat("pod-b", THRESHOLD_S - 2)
    state.is_leader = True
    loop = recovery(store, state)
    await loop.run_once()
    assert 1.0 + EXPIRY_MARGIN_S < loop.next_wait() <= 2.0 + EXPIRY_MARGIN_S
    assert recovery(store, state, on_expiry=False).next_wait() == INTERVAL_S


async def test_a_skipped_cycle_retries_soon_without_spinning(
    store: MemoryStore, state: PodState
) -> None:
    await store.pod_register("pod-b", 4)
    store.age_heartbeat("pod-b", THRESHOLD_S + 1)
    state.is_leader = True
    loop = recovery(store, state)
    store.recovery_locked = True  # another pod's manual cycle
    await loop.run_once()
    assert loop.next_wait() == MIN_WAIT_S
    store.recovery_locked = False
    await loop.run_once()
    assert store.pods["pod-b"].status == "down"


async def test_a_manual_cycle_on_a_follower_is_denied(store: MemoryStore) -> None:
    await store.pod_register("pod-b", 4)
    follower = PodState(base_pod_id="pod-b", max_capacity=4, database_ok=True)
    with pytest.raises(errors.PermissionDeniedError, match="pod-a"):
        await recovery(store, follower).run_manual(force=False, dry_run=False)
