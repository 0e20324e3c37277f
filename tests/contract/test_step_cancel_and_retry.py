"""The store contract for CancelStep and RetryStep: pending steps cancelled at once,
claimed ones ending cancelled through their fenced outcome, finished ones refused, a cancel
racing a completion ending in exactly one terminal state, retries with a fresh budget."""

import asyncio
from dataclasses import replace

import pytest

from fleetq_server import errors
from fleetq_server.store.records import InsertOutcome, StepOutcome
from fleetq_server.submission import SubmitRequest, prepare_step
from tests.contract.conftest import Backend

REQUEST = SubmitRequest(
    type="hello_world", args={}, metadata=None, priority=0, max_retries=0, idempotency_key=None
)
ERROR = {"type": "ValueError", "message": "no"}
RACES = 300
RACES_AT_ONCE = 4


async def submit_many(backend: Backend, count: int = 1, **changes: object) -> list[str]:
    steps = [prepare_step(replace(REQUEST, **changes)) for _ in range(count)]  # type: ignore[arg-type]
    outcomes = await backend.store.step_insert_many(steps)
    return [o.step_id for o in outcomes if isinstance(o, InsertOutcome)]


async def test_a_pending_step_is_cancelled_at_once_and_never_claimed(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    [step_id] = await submit_many(backend)

    assert await store.step_cancel(step_id) == "cancelled"
    assert await store.step_cancel(step_id) == "cancelled"  # twice is not an error

    assert await store.step_claim_batch("pod-a", ["hello_world"], 8) == []
    record = await store.step_get(step_id)
    assert (record.status, record.cancel_requested, record.attempts) == ("cancelled", True, ())
    stats = await store.queue_stats(15)
    assert stats.counts_by_status.get("cancelled") == 1


async def test_a_claimed_step_ends_cancelled_whatever_its_outcome(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    ids = await submit_many(backend, 2, max_retries=3)
    claimed = await store.step_claim_batch("pod-a", ["hello_world"], 8)

    assert [await store.step_cancel(i) for i in ids] == ["claimed", "claimed"]
    assert sorted(await store.step_cancels_requested("pod-a")) == sorted(ids)
    statuses = await store.step_finish_many(
        [
            StepOutcome(claimed[0], "pod-a", result_json="1"),
            StepOutcome(claimed[1], "pod-a", error=ERROR),  # retries left: still not requeued
        ]
    )

    assert statuses == ["cancelled", "cancelled"]
    for step_id in ids:
        record = await store.step_get(step_id)
        assert (record.status, record.retry_count) == ("cancelled", 0)
        assert [a.outcome for a in record.attempts] == ["cancelled"]
    assert await store.step_cancels_requested("pod-a") == []


async def test_finished_and_unknown_steps_are_refused(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    [step_id] = await submit_many(backend)
    [claimed] = await store.step_claim_batch("pod-a", ["hello_world"], 8)
    await store.step_finish_many([StepOutcome(claimed, "pod-a", result_json="1")])

    with pytest.raises(errors.ConflictError, match="completed"):
        await store.step_cancel(step_id)
    with pytest.raises(errors.ConflictError, match="completed"):
        await store.step_retry(step_id)
    with pytest.raises(errors.NotFoundError):
        await store.step_cancel("step_nope")
    with pytest.raises(errors.NotFoundError):
        await store.step_retry("step_nope")
    assert (await store.step_get(step_id)).status == "completed"


async def test_a_cancel_racing_a_completion_ends_in_exactly_one_terminal_state(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("pod-a", 1000)
    ids = await submit_many(backend, RACES)
    claimed = {s.step_id: s for s in await store.step_claim_batch("pod-a", ["hello_world"], RACES)}
    assert len(claimed) == RACES

    async def cancel(step_id: str) -> str | errors.ConflictError:
        try:
            return await store.step_cancel(step_id)
        except errors.ConflictError as refused:
            return refused

    async def race(step_id: str) -> tuple[str | errors.ConflictError, str | None]:
        done = store.step_finish_many([StepOutcome(claimed[step_id], "pod-a", result_json="1")])
        cancelled, [finished] = await asyncio.gather(cancel(step_id), done)
        return cancelled, finished

    results = []
    for start in range(0, RACES, RACES_AT_ONCE):  # within the store's pool
        chunk = ids[start : start + RACES_AT_ONCE]
        results += await asyncio.gather(*(race(step_id) for step_id in chunk))

    for step_id, (cancelled, finished) in zip(ids, results, strict=True):
        record = await store.step_get(step_id)
        if isinstance(cancelled, errors.ConflictError):  # the completion won: cancel refused
            assert (finished, record.status, record.result) == ("completed", "completed", 1)
        else:  # the cancel won: the completion's "completed" was refused
            assert cancelled == "claimed"
            assert (finished, record.status) == ("cancelled", "cancelled")
        assert len(record.attempts) == 1


async def test_retry_requeues_a_failed_or_cancelled_step_with_a_fresh_budget(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    ids = await submit_many(backend, 2)
    [claimed] = await store.step_claim_batch("pod-a", ["hello_world"], 1)
    failed = claimed.step_id
    [cancelled] = [step_id for step_id in ids if step_id != failed]
    await store.step_finish_many([StepOutcome(claimed, "pod-a", error=ERROR)])
    await store.step_cancel(cancelled)
    with pytest.raises(errors.ConflictError, match="is failed"):
        await store.step_cancel(failed)

    await store.step_retry(failed)
    await store.step_retry(cancelled)

    for step_id in (failed, cancelled):
        record = await store.step_get(step_id)
        assert (record.status, record.retry_count, record.cancel_requested) == (
            "pending",
            0,
            False,
        )
    with pytest.raises(errors.ConflictError, match="pending"):
        await store.step_retry(failed)
    again = {s.step_id for s in await store.step_claim_batch("pod-a", ["hello_world"], 8)}
    assert again == {failed, cancelled}
    assert [a.outcome for a in (await store.step_get(failed)).attempts] == ["failed"]
