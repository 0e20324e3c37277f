"""The store contract for steps: submits and de-duplication, the order of claims, fencing by
attempt, and retry or fail."""

import asyncio
from dataclasses import replace

import pytest

from fleetq_server import errors
from fleetq_server.store.records import InsertOutcome, StepOutcome
from fleetq_server.submission import prepare_step
from tests.contract.conftest import HELLO, Backend, submit_hello


async def test_claim_orders_by_priority_then_submit_order(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    low = await submit_hello(store, priority=0)
    high = await submit_hello(store, priority=5)
    low_later = await submit_hello(store, priority=0)
    claimed = await store.step_claim_batch("pod-a", ["hello_world"], 8)
    assert [step.step_id for step in claimed] == [high, low, low_later]


async def test_claim_across_types_keeps_one_priority_and_submit_order(backend: Backend) -> None:
    store = backend.store
    # Each type is read from its own index range: the merge must still be one global order.
    await store.pod_register("pod-a", 8)
    a_low = await submit_hello(store, type="a", priority=0)
    b_high = await submit_hello(store, type="b", priority=5)
    b_low = await submit_hello(store, type="b", priority=0)
    a_high = await submit_hello(store, type="a", priority=5)
    a_later = await submit_hello(store, type="a", priority=0)
    claimed = await store.step_claim_batch("pod-a", ["a", "b"], 4)
    assert [step.step_id for step in claimed] == [b_high, a_high, a_low, b_low]
    [last] = await store.step_claim_batch("pod-a", ["b", "a"], 4)
    assert last.step_id == a_later


async def test_claim_takes_only_known_types_and_respects_the_limit(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    for _ in range(3):
        await submit_hello(store)
    unknown = await submit_hello(store, type="nobody_runs_this")
    claimed = await store.step_claim_batch("pod-a", ["hello_world"], 2)
    assert len(claimed) == 2
    claimed += await store.step_claim_batch("pod-a", ["hello_world"], 2)
    assert len(claimed) == 3
    assert (await store.step_get(unknown)).status == "pending"


async def test_a_pod_that_is_down_cannot_claim(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    await submit_hello(store)
    await store.pod_mark_down("pod-a")
    assert await store.step_claim_batch("pod-a", ["hello_world"], 8) == []


async def test_stale_attempt_token_changes_nothing(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit_hello(store)
    [first] = await store.step_claim_batch("pod-a", ["hello_world"], 1)
    await store.step_release([first], "pod-a")
    [second] = await store.step_claim_batch("pod-a", ["hello_world"], 1)
    assert second.attempt == first.attempt + 1
    stale_success = StepOutcome(first, "pod-a", result_json='{"stale":true}')
    stale_failure = StepOutcome(first, "pod-a", error={"type": "X", "message": "m"})
    fresh_success = StepOutcome(second, "pod-a", result_json='{"fresh":true}')
    assert await store.step_finish_many([stale_success, stale_failure, fresh_success]) == [
        None,
        None,
        "completed",
    ]
    record = await store.step_get(step_id)
    assert (record.status, record.result) == ("completed", {"fresh": True})


async def test_failures_retry_until_the_budget_is_spent(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit_hello(store, max_retries=2)
    statuses = []
    for _ in range(3):
        [step] = await store.step_claim_batch("pod-a", ["hello_world"], 1)
        failure = StepOutcome(step, "pod-a", error={"type": "E", "message": "x"})
        statuses += await store.step_finish_many([failure])
    assert statuses == ["pending", "pending", "failed"]
    record = await store.step_get(step_id)
    assert (record.retry_count, record.error) == (2, {"type": "E", "message": "x"})


async def test_backoff_hides_a_step_until_it_expires(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    await submit_hello(store)
    [step] = await store.step_claim_batch("pod-a", ["hello_world"], 1)
    failure = StepOutcome(step, "pod-a", error={"type": "E", "message": "x"}, backoff_s=60)
    assert await store.step_finish_many([failure]) == ["pending"]
    assert await store.step_claim_batch("pod-a", ["hello_world"], 1) == []


async def test_duplicate_client_keys_resolve_to_one_step(backend: Backend) -> None:
    store = backend.store
    batches = await asyncio.gather(
        *(
            store.step_insert_many([prepare_step(replace(HELLO, idempotency_key="k"))])
            for _ in range(10)
        )
    )
    outcomes = [outcome for [outcome] in batches]
    assert all(isinstance(outcome, InsertOutcome) for outcome in outcomes)
    assert len({outcome.step_id for outcome in outcomes}) == 1  # type: ignore[union-attr]
    assert sum(outcome.created for outcome in outcomes) == 1  # type: ignore[union-attr]
    [conflict] = await store.step_insert_many(
        [prepare_step(replace(HELLO, idempotency_key="k", args={}))]
    )
    assert isinstance(conflict, errors.ConflictError)


async def test_a_batch_resolves_keys_within_itself_and_against_the_table(backend: Backend) -> None:
    store = backend.store
    [first] = await store.step_insert_many([prepare_step(replace(HELLO, idempotency_key="a"))])
    assert isinstance(first, InsertOutcome)
    outcomes = await store.step_insert_many(
        [
            prepare_step(replace(HELLO, idempotency_key="a")),
            prepare_step(replace(HELLO, idempotency_key="b")),
            prepare_step(replace(HELLO, idempotency_key="b")),
            prepare_step(HELLO),
        ]
    )
    assert all(isinstance(outcome, InsertOutcome) for outcome in outcomes)
    again, new_b, repeat_b, plain = outcomes
    assert again == InsertOutcome(first.step_id, created=False)
    assert new_b.created and repeat_b == InsertOutcome(new_b.step_id, created=False)  # type: ignore[union-attr]
    assert plain.created  # type: ignore[union-attr]


async def test_an_atomic_batch_with_a_conflict_writes_nothing(backend: Backend) -> None:
    store = backend.store
    await store.step_insert_many([prepare_step(replace(HELLO, idempotency_key="a"))])
    fresh = prepare_step(HELLO)
    with pytest.raises(errors.ConflictError):
        await store.step_insert_many(
            [fresh, prepare_step(replace(HELLO, idempotency_key="a", args={}))], atomic=True
        )
    with pytest.raises(errors.NotFoundError):
        await store.step_get(fresh.step_id)


async def test_a_batch_of_outcomes_completes_retries_and_fails(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    done, retried, exhausted = (
        await submit_hello(store),
        await submit_hello(store, max_retries=1),
        await submit_hello(store, max_retries=0),
    )
    claimed = {s.step_id: s for s in await store.step_claim_batch("pod-a", ["hello_world"], 3)}
    error = {"type": "E", "message": "boom"}
    statuses = await store.step_finish_many(
        [
            StepOutcome(claimed[done], "pod-a", result_json="[1,2]"),
            StepOutcome(claimed[retried], "pod-a", error=error),
            StepOutcome(claimed[exhausted], "pod-a", error=error),
        ]
    )
    assert statuses == ["completed", "pending", "failed"]
    assert (await store.step_get(done)).result == [1, 2]
    requeued = await store.step_get(retried)
    assert (requeued.retry_count, requeued.claimed_by, requeued.error) == (1, None, error)
    failed = await store.step_get(exhausted)
    assert (failed.retry_count, failed.error) == (0, error)


async def test_unknown_step_is_not_found(backend: Backend) -> None:
    store = backend.store
    with pytest.raises(errors.NotFoundError):
        await store.step_get("step_missing")
