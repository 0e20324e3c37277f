"""The store contract for pods and recovery: heartbeats, the leader, and recovery's
accounting (requeue or fail, exactly max_retries times; dry runs change nothing)."""

import pytest

from fleetq_server import errors
from fleetq_server.store.ports import StorePort
from tests.contract.conftest import Backend, submit_hello


async def test_recovery_requeues_exactly_max_retries_times_then_fails(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("leader", 8)
    step_id = await submit_hello(store, max_retries=3)
    outcomes = []
    for orphaning in range(4):
        worker = f"worker-{orphaning}"
        await store.pod_register(worker, 8)
        [step] = await store.step_claim_batch(worker, ["hello_world"], 1)
        assert step.step_id == step_id
        await backend.age_heartbeat(worker, 60)
        outcome, ran = await store.recovery_run("leader", 15, dry_run=False, trigger="manual")
        assert ran and outcome.dead_pods == [worker]
        outcomes.append((outcome.requeued_steps, outcome.terminal_steps))
        again, _ = await store.recovery_run("leader", 15, dry_run=False, trigger="manual")
        assert again.orphaned_steps_found == 0  # idempotent
    assert outcomes == [([step_id], [])] * 3 + [([], [step_id])]
    record = await store.step_get(step_id)
    assert (record.status, record.retry_count) == ("failed", 3)
    assert record.error is not None and record.error["type"] == "PodLost"


async def test_a_pod_restarted_under_its_old_id_does_not_hold_its_predecessors_claims(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("leader", 8)
    await store.pod_register("worker", 8)
    orphan = await submit_hello(store)
    [claimed] = await store.step_claim_batch("worker", ["hello_world"], 1)
    assert claimed.step_id == orphan
    await store.pod_register("worker", 8)  # the same FLEETQ_POD_ID, a new process
    fresh = await submit_hello(store)
    [kept] = await store.step_claim_batch("worker", ["hello_world"], 1)
    assert kept.step_id == fresh

    outcome, ran = await store.recovery_run("leader", 15, dry_run=False, trigger="manual")

    assert ran and outcome.dead_pods == [] and outcome.requeued_steps == [orphan]
    requeued = await store.step_get(orphan)
    assert (requeued.status, requeued.retry_count, requeued.claimed_by) == ("pending", 1, None)
    assert (await store.step_get(fresh)).status == "claimed"


async def test_recovery_dry_run_changes_nothing(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("leader", 8)
    await store.pod_register("worker", 8)
    step_id = await submit_hello(store)
    await store.step_claim_batch("worker", ["hello_world"], 1)
    await backend.age_heartbeat("worker", 60)
    outcome, _ = await store.recovery_run("leader", 15, dry_run=True, trigger="manual")
    assert (outcome.dead_pods, outcome.requeued_steps) == (["worker"], [step_id])
    assert (await store.step_get(step_id)).status == "claimed"
    assert [pod.pod_id for pod in (await store.leader_get(15)).live_pods] == ["leader"]


async def test_recovery_on_a_non_leader_is_denied(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("eldest", 8)
    await store.pod_register("younger", 8)
    with pytest.raises(errors.PermissionDeniedError, match="eldest"):
        await store.recovery_run("younger", 15, dry_run=False, trigger="manual")


async def test_recovery_while_another_cycle_holds_the_lock_conflicts(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("leader", 8)
    async with backend.recovery_lock_held():
        with pytest.raises(errors.RecoveryInProgressError):
            await store.recovery_run("leader", 15, dry_run=False, trigger="manual")


async def test_heartbeat_of_a_pod_marked_down_reports_it_dead(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    assert (await store.pod_heartbeat("pod-a", 0, 8, 15)).alive
    await store.pod_mark_down("pod-a")
    outcome = await store.pod_heartbeat("pod-a", 0, 8, 15)
    assert not outcome.alive and outcome.leader_pod_id is None


THRESHOLD_S = 12.0


async def expiry_pods(backend: Backend) -> StorePort:
    for pod_id in ("leader", "other"):
        await backend.store.pod_register(pod_id, 4)
    return backend.store


async def test_next_expiry_is_the_stalest_up_pods(backend: Backend) -> None:
    store = await expiry_pods(backend)
    await backend.age_heartbeat("other", THRESHOLD_S - 2)
    expiry = await store.pod_next_expiry(THRESHOLD_S)
    assert expiry is not None and 1.0 < expiry <= 2.0


async def test_a_stale_pod_not_yet_marked_down_is_overdue(backend: Backend) -> None:
    store = await expiry_pods(backend)
    # It went stale while (or after) the last cycle ran: the next cycle is due at once.
    await backend.age_heartbeat("other", THRESHOLD_S + 1)
    expiry = await store.pod_next_expiry(THRESHOLD_S)
    assert expiry is not None and -2.0 < expiry <= -1.0


async def test_pods_marked_down_do_not_count(backend: Backend) -> None:
    store = await expiry_pods(backend)
    await store.pod_mark_down("other")
    expiry = await store.pod_next_expiry(THRESHOLD_S)
    assert expiry is not None and THRESHOLD_S - 1 < expiry <= THRESHOLD_S
    await store.pod_mark_down("leader")
    assert await store.pod_next_expiry(THRESHOLD_S) is None
