"""The store contract for scheduled steps (run_at, the claimer's next due time) and for
watched steps (registration, batched reads, change notifications)."""

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from fleetq_server.store.records import InsertOutcome, StepOutcome
from fleetq_server.submission import SubmitRequest, prepare_step
from tests.contract.conftest import Backend

REQUEST = SubmitRequest(
    type="hello_world", args={}, metadata=None, priority=0, max_retries=3, idempotency_key=None
)
HOUR = 3600.0


async def submit(backend: Backend, **changes: object) -> str:
    step = prepare_step(replace(REQUEST, **changes))  # type: ignore[arg-type]
    [outcome] = await backend.store.step_insert_many([step])
    assert isinstance(outcome, InsertOutcome)
    return outcome.step_id


async def test_a_delayed_step_is_not_claimed_before_its_time_and_reports_run_at(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit(backend, delay_s=HOUR, priority=10)
    now_step = await submit(backend)

    claimed = await store.step_claim_batch("pod-a", ["hello_world"], 8)

    assert [step.step_id for step in claimed] == [now_step]
    record = await store.step_get(step_id)
    assert record.status == "pending"
    assert record.run_at is not None
    assert record.run_at - record.created_ts == timedelta(seconds=HOUR)
    assert (await store.step_get(now_step)).run_at is None


async def test_a_step_whose_run_at_has_passed_is_claimed_at_once(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    run_at = datetime.now(UTC) - timedelta(minutes=1)
    step_id = await submit(backend, run_at=run_at)

    [claimed] = await store.step_claim_batch("pod-a", ["hello_world"], 8)

    assert claimed.step_id == step_id
    assert (await store.step_get(step_id)).run_at == run_at


async def test_next_due_is_the_earliest_future_step_of_the_types_asked(backend: Backend) -> None:
    store = backend.store
    assert await store.step_next_due(["hello_world"]) is None
    await submit(backend, delay_s=HOUR)
    await submit(backend, delay_s=60.0)
    await submit(backend, type="other", delay_s=10.0)
    await submit(backend)  # due now: not "next"

    due = await store.step_next_due(["hello_world"])

    assert due is not None and 50 < due <= 60
    assert await store.step_next_due(["unknown"]) is None


async def test_next_due_counts_a_step_that_fell_due_since_the_callers_claim_began(
    backend: Backend,
) -> None:
    store = backend.store
    step_id = await submit(backend, delay_s=10.0)
    await backend.age_step(step_id, 15.0)  # scheduled 10 s after its submit: due 5 s ago

    assert await store.step_next_due(["hello_world"]) is None  # no longer in the future
    due = await store.step_next_due(["hello_world"], since_s=60.0)
    assert due is not None and -6 < due <= -5  # a claim 60 s ago did not see it due
    # A claim 4 s ago saw it due: claimable then, so not the caller's "next".
    assert await store.step_next_due(["hello_world"], since_s=4.0) is None


async def test_next_due_includes_a_retry_backoff(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    await submit(backend)
    [claimed] = await store.step_claim_batch("pod-a", ["hello_world"], 8)
    error = {"type": "ValueError", "message": "no"}
    await store.step_finish_many([StepOutcome(claimed, "pod-a", error=error, backoff_s=30.0)])

    due = await store.step_next_due(["hello_world"])

    assert due is not None and 20 < due <= 30


async def test_step_get_many_returns_the_steps_that_exist(backend: Backend) -> None:
    first = await submit(backend)
    second = await submit(backend)

    found = await backend.store.step_get_many([first, "step_missing", second])

    assert sorted(step.step_id for step in found) == sorted([first, second])


async def test_changes_of_watched_steps_only_are_notified_by_id(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    watched = await submit(backend, priority=1)
    unwatched = await submit(backend)
    heard: asyncio.Queue[list[str] | None] = asyncio.Queue()
    subscription = store.step_change_subscription(heard.put_nowait)
    await subscription.ensure()
    try:
        await store.step_watch_add(watched, "pod-a")
        await store.step_watch_add(watched, "pod-a")  # idempotent

        claimed = await store.step_claim_batch("pod-a", ["hello_world"], 8)  # changes both

        assert len(claimed) == 2
        assert await asyncio.wait_for(heard.get(), 10) == [watched]
        await store.step_watch_remove([watched], "pod-a")
        await store.step_watch_add(unwatched, "pod-a")
        await store.step_release(claimed, "pod-a")  # changes both again
        assert await asyncio.wait_for(heard.get(), 10) == [unwatched]
    finally:
        await subscription.close()


async def test_a_scheduled_steps_pending_expiry_counts_from_its_run_at(backend: Backend) -> None:
    store = backend.store
    unscheduled = await submit(backend, pending_expiry_s=1e-6)
    scheduled = await submit(backend, pending_expiry_s=1e-6, delay_s=HOUR)

    expired = await store.step_expire_pending(10)

    assert expired == 1
    assert (await store.step_get(unscheduled)).status == "failed"
    assert (await store.step_get(scheduled)).status == "pending"
