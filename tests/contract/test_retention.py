"""The store contract for retention: only old, finished steps, old recovery records and pods
long down go, oldest first, in bounded batches."""

import secrets
from dataclasses import replace

import pytest

from fleetq_server import errors
from fleetq_server.store.ports import StorePort
from fleetq_server.store.records import StepOutcome
from fleetq_server.submission import prepare_step
from tests.contract.conftest import HELLO, Backend

DAY_S = 86400.0


@pytest.fixture(autouse=True)
async def pod_a(backend: Backend) -> None:
    await backend.store.pod_register("pod-a", 8)


async def step_in(backend: Backend, status: str, *, age_days: float = 0) -> str:
    """A step brought to `status` through the store, its timestamps backdated by `age_days`."""
    store = backend.store
    step = prepare_step(replace(HELLO, type=f"t_{secrets.token_hex(4)}", max_retries=0))
    await store.step_insert_many([step])
    if status != "pending":
        [claimed] = await store.step_claim_batch("pod-a", [step.type], 1)
        if status != "claimed":
            error = {"type": "E", "message": "x"} if status == "failed" else None
            await store.step_finish_many(
                [StepOutcome(claimed, "pod-a", result_json="1", error=error)]
            )
    await backend.age_step(step.step_id, age_days * DAY_S)
    return step.step_id


async def remaining(store: StorePort, step_ids: list[str]) -> list[str]:
    kept = []
    for step_id in step_ids:
        try:
            await store.step_get(step_id)
            kept.append(step_id)
        except errors.NotFoundError:
            pass
    return kept


async def test_deletes_only_finished_steps_older_than_the_age(backend: Backend) -> None:
    store = backend.store
    old_done = await step_in(backend, "completed", age_days=8)
    old_failed = await step_in(backend, "failed", age_days=8)
    young_done = await step_in(backend, "completed", age_days=1)
    old_pending = await step_in(backend, "pending", age_days=30)
    old_claimed = await step_in(backend, "claimed", age_days=30)
    assert await store.step_delete_finished_before(7 * DAY_S, 1000) == 2
    everything = [old_done, old_failed, young_done, old_pending, old_claimed]
    assert await remaining(store, everything) == [young_done, old_pending, old_claimed]
    assert await store.step_delete_finished_before(7 * DAY_S, 1000) == 0


async def test_deletes_in_bounded_batches_oldest_first(backend: Backend) -> None:
    store = backend.store
    steps = [await step_in(backend, "completed", age_days=10 + i) for i in range(5)]
    assert await store.step_delete_finished_before(DAY_S, 2) == 2
    assert await remaining(store, steps) == steps[:3]  # the two oldest went first
    assert [await store.step_delete_finished_before(DAY_S, 2) for _ in range(3)] == [2, 1, 0]


async def test_deletes_recovery_records_older_than_the_age(backend: Backend) -> None:
    store = backend.store
    for _ in range(3):
        await store.recovery_run("pod-a", 15, dry_run=False, trigger="manual")
    await backend.age_recovery_records(2, 8 * DAY_S)
    assert await store.recovery_record_delete_before(7 * DAY_S, 1000) == 2
    assert await store.recovery_record_delete_before(0, 1000) == 1


async def test_deletes_pods_marked_down_whose_last_heartbeat_is_older_than_the_age(
    backend: Backend,
) -> None:
    store = backend.store
    for pod_id in ("gone-long-ago", "gone-lately", "silent-but-up"):
        await store.pod_register(pod_id, 4)
    await store.pod_mark_down("gone-long-ago")
    await store.pod_mark_down("gone-lately")
    for pod_id in ("gone-long-ago", "silent-but-up"):  # recovery's business, not retention's
        await backend.age_heartbeat(pod_id, 8 * DAY_S)

    assert await store.pod_delete_down_before(7 * DAY_S, 1000) == 1

    assert await backend.pod_ids() == ["gone-lately", "pod-a", "silent-but-up"]


async def test_deletes_workers_unseen_past_the_age_unless_they_hold_a_lease(
    backend: Backend,
) -> None:
    store = backend.store
    step = prepare_step(replace(HELLO, type="leased_type"))
    await store.step_insert_many([step])
    assert await store.step_lease_claim("pod-a", "holding", ["leased_type"], 1, 3600) != []
    for worker_id in ("unseen", "seen-lately"):  # their claims found nothing: no lease
        assert await store.step_lease_claim("pod-a", worker_id, ["other_type"], 1, 60) == []
    for worker_id in ("unseen", "holding"):
        await backend.age_worker(worker_id, 2 * DAY_S)

    assert await store.worker_delete_unseen_before(DAY_S, 1000) == 1

    workers = await store.worker_list(10 * DAY_S, 100)
    assert sorted(w.worker_id for w in workers) == ["holding", "seen-lately"]
