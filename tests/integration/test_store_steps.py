"""The store against a real PostgreSQL: claims, fencing, retries, recovery accounting."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from fleetq_server import errors
from fleetq_server.store import Store, open_store
from fleetq_server.store.records import InsertOutcome, StepOutcome
from fleetq_server.submission import SubmitRequest, prepare_step
from tests.support.backdating import age_heartbeat

REQUEST = SubmitRequest(
    type="hello_world",
    args={"n": 1},
    metadata=None,
    priority=0,
    max_retries=3,
    idempotency_key=None,
)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await open_store(database_url, pool_size=4)
    yield store
    await store.close()


async def submit(store: Store, **changes: object) -> str:
    [outcome] = await store.step_insert_many([prepare_step(replace(REQUEST, **changes))])  # type: ignore[arg-type]
    assert isinstance(outcome, InsertOutcome)
    return outcome.step_id


async def test_migrations_are_idempotent_across_concurrent_starts(database_url: str) -> None:
    stores = await asyncio.gather(*(open_store(database_url, pool_size=1) for _ in range(4)))
    for store in stores:
        await store.ping()
        await store.close()


async def test_claim_orders_by_priority_then_submit_order(store: Store) -> None:
    await store.pod_register("pod-a", 8)
    low = await submit(store, priority=0)
    high = await submit(store, priority=5)
    low_later = await submit(store, priority=0)
    claimed = await store.step_claim_batch("pod-a", ["hello_world"], 8)
    assert [step.step_id for step in claimed] == [high, low, low_later]


async def test_claim_across_types_keeps_one_priority_and_submit_order(store: Store) -> None:
    # Each type is read from its own index range: the merge must still be one global order.
    await store.pod_register("pod-a", 8)
    a_low = await submit(store, type="a", priority=0)
    b_high = await submit(store, type="b", priority=5)
    b_low = await submit(store, type="b", priority=0)
    a_high = await submit(store, type="a", priority=5)
    a_later = await submit(store, type="a", priority=0)
    claimed = await store.step_claim_batch("pod-a", ["a", "b"], 4)
    assert [step.step_id for step in claimed] == [b_high, a_high, a_low, b_low]
    [last] = await store.step_claim_batch("pod-a", ["b", "a"], 4)
    assert last.step_id == a_later


async def test_claim_takes_only_known_types_and_respects_the_limit(store: Store) -> None:
    await store.pod_register("pod-a", 8)
    for _ in range(3):
        await submit(store)
    unknown = await submit(store, type="nobody_runs_this")
    claimed = await store.step_claim_batch("pod-a", ["hello_world"], 2)
    assert len(claimed) == 2
    claimed += await store.step_claim_batch("pod-a", ["hello_world"], 2)
    assert len(claimed) == 3
    assert (await store.step_get(unknown)).status == "pending"


async def test_a_pod_that_is_down_cannot_claim(store: Store) -> None:
    await store.pod_register("pod-a", 8)
    await submit(store)
    await store.pod_mark_down("pod-a")
    assert await store.step_claim_batch("pod-a", ["hello_world"], 8) == []


async def test_stale_attempt_token_changes_nothing(store: Store) -> None:
    await store.pod_register("pod-a", 8)
    step_id = await submit(store)
    [first] = await store.step_claim_batch("pod-a", ["hello_world"], 1)
    await store.step_release([first], "pod-a")
    [second] = await store.step_claim_batch("pod-a", ["hello_world"], 1)
    assert second.attempt == first.attempt + 1
    stale_success = StepOutcome(first, "pod-a", result={"stale": True})
    stale_failure = StepOutcome(first, "pod-a", error={"type": "X", "message": "m"})
    fresh_success = StepOutcome(second, "pod-a", result={"fresh": True})
    assert await store.step_finish_many([stale_success, stale_failure, fresh_success]) == [
        None,
        None,
        "completed",
    ]
    record = await store.step_get(step_id)
    assert (record.status, record.result) == ("completed", {"fresh": True})


async def test_failures_retry_until_the_budget_is_spent(store: Store) -> None:
    await store.pod_register("pod-a", 8)
    step_id = await submit(store, max_retries=2)
    statuses = []
    for _ in range(3):
        [step] = await store.step_claim_batch("pod-a", ["hello_world"], 1)
        failure = StepOutcome(step, "pod-a", error={"type": "E", "message": "x"})
        statuses += await store.step_finish_many([failure])
    assert statuses == ["pending", "pending", "failed"]
    record = await store.step_get(step_id)
    assert (record.retry_count, record.error) == (2, {"type": "E", "message": "x"})


async def test_backoff_hides_a_step_until_it_expires(store: Store) -> None:
    await store.pod_register("pod-a", 8)
    await submit(store)
    [step] = await store.step_claim_batch("pod-a", ["hello_world"], 1)
    failure = StepOutcome(step, "pod-a", error={"type": "E", "message": "x"}, backoff_s=60)
    assert await store.step_finish_many([failure]) == ["pending"]
    assert await store.step_claim_batch("pod-a", ["hello_world"], 1) == []


async def test_duplicate_client_keys_resolve_to_one_step(store: Store) -> None:
    batches = await asyncio.gather(
        *(
            store.step_insert_many([prepare_step(replace(REQUEST, idempotency_key="k"))])
            for _ in range(10)
        )
    )
    outcomes = [outcome for [outcome] in batches]
    assert all(isinstance(outcome, InsertOutcome) for outcome in outcomes)
    assert len({outcome.step_id for outcome in outcomes}) == 1  # type: ignore[union-attr]
    assert sum(outcome.created for outcome in outcomes) == 1  # type: ignore[union-attr]
    [conflict] = await store.step_insert_many(
        [prepare_step(replace(REQUEST, idempotency_key="k", args={}))]
    )
    assert isinstance(conflict, errors.ConflictError)


async def test_a_batch_resolves_keys_within_itself_and_against_the_table(store: Store) -> None:
    [first] = await store.step_insert_many([prepare_step(replace(REQUEST, idempotency_key="a"))])
    assert isinstance(first, InsertOutcome)
    outcomes = await store.step_insert_many(
        [
            prepare_step(replace(REQUEST, idempotency_key="a")),
            prepare_step(replace(REQUEST, idempotency_key="b")),
            prepare_step(replace(REQUEST, idempotency_key="b")),
            prepare_step(REQUEST),
        ]
    )
    assert all(isinstance(outcome, InsertOutcome) for outcome in outcomes)
    again, new_b, repeat_b, plain = outcomes
    assert again == InsertOutcome(first.step_id, created=False)
    assert new_b.created and repeat_b == InsertOutcome(new_b.step_id, created=False)  # type: ignore[union-attr]
    assert plain.created  # type: ignore[union-attr]


async def test_an_atomic_batch_with_a_conflict_writes_nothing(store: Store) -> None:
    await store.step_insert_many([prepare_step(replace(REQUEST, idempotency_key="a"))])
    fresh = prepare_step(REQUEST)
    with pytest.raises(errors.ConflictError):
        await store.step_insert_many(
            [fresh, prepare_step(replace(REQUEST, idempotency_key="a", args={}))], atomic=True
        )
    with pytest.raises(errors.NotFoundError):
        await store.step_get(fresh.step_id)


async def test_a_batch_of_outcomes_completes_retries_and_fails(store: Store) -> None:
    await store.pod_register("pod-a", 8)
    done, retried, exhausted = (
        await submit(store),
        await submit(store, max_retries=1),
        await submit(store, max_retries=0),
    )
    claimed = {s.step_id: s for s in await store.step_claim_batch("pod-a", ["hello_world"], 3)}
    error = {"type": "E", "message": "boom"}
    statuses = await store.step_finish_many(
        [
            StepOutcome(claimed[done], "pod-a", result=[1, 2]),
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


async def test_unknown_step_is_not_found(store: Store) -> None:
    with pytest.raises(errors.NotFoundError):
        await store.step_get("step_missing")


async def test_recovery_requeues_exactly_max_retries_times_then_fails(store: Store) -> None:
    await store.pod_register("leader", 8)
    step_id = await submit(store, max_retries=3)
    outcomes = []
    for orphaning in range(4):
        worker = f"worker-{orphaning}"
        await store.pod_register(worker, 8)
        [step] = await store.step_claim_batch(worker, ["hello_world"], 1)
        assert step.step_id == step_id
        await age_heartbeat(store, worker, 60)
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
    store: Store,
) -> None:
    await store.pod_register("leader", 8)
    await store.pod_register("worker", 8)
    orphan = await submit(store)
    [claimed] = await store.step_claim_batch("worker", ["hello_world"], 1)
    assert claimed.step_id == orphan
    await store.pod_register("worker", 8)  # the same FLEETQ_POD_ID, a new process
    fresh = await submit(store)
    [kept] = await store.step_claim_batch("worker", ["hello_world"], 1)
    assert kept.step_id == fresh

    outcome, ran = await store.recovery_run("leader", 15, dry_run=False, trigger="manual")

    assert ran and outcome.dead_pods == [] and outcome.requeued_steps == [orphan]
    requeued = await store.step_get(orphan)
    assert (requeued.status, requeued.retry_count, requeued.claimed_by) == ("pending", 1, None)
    assert (await store.step_get(fresh)).status == "claimed"


async def test_recovery_dry_run_changes_nothing(store: Store) -> None:
    await store.pod_register("leader", 8)
    await store.pod_register("worker", 8)
    step_id = await submit(store)
    await store.step_claim_batch("worker", ["hello_world"], 1)
    await age_heartbeat(store, "worker", 60)
    outcome, _ = await store.recovery_run("leader", 15, dry_run=True, trigger="manual")
    assert (outcome.dead_pods, outcome.requeued_steps) == (["worker"], [step_id])
    assert (await store.step_get(step_id)).status == "claimed"
    assert [pod.pod_id for pod in (await store.leader_get(15)).live_pods] == ["leader"]


async def test_recovery_on_a_non_leader_is_denied(store: Store) -> None:
    await store.pod_register("eldest", 8)
    await store.pod_register("younger", 8)
    with pytest.raises(errors.PermissionDeniedError, match="eldest"):
        await store.recovery_run("younger", 15, dry_run=False, trigger="manual")


async def test_recovery_while_another_cycle_holds_the_lock_conflicts(store: Store) -> None:
    from fleetq_server.store.recovery import RECOVERY_LOCK_KEY

    await store.pod_register("leader", 8)
    async with store._transaction() as connection:
        await connection.execute("SELECT pg_advisory_xact_lock($1)", RECOVERY_LOCK_KEY)
        with pytest.raises(errors.RecoveryInProgressError):
            await store.recovery_run("leader", 15, dry_run=False, trigger="manual")


async def test_heartbeat_of_a_pod_marked_down_reports_it_dead(store: Store) -> None:
    await store.pod_register("pod-a", 8)
    assert (await store.pod_heartbeat("pod-a", 0, 8, 15)).alive
    await store.pod_mark_down("pod-a")
    outcome = await store.pod_heartbeat("pod-a", 0, 8, 15)
    assert not outcome.alive and outcome.leader_pod_id is None
