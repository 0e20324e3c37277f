"""The store contract for attempt history: one row per ended execution, written by the
statement that ended it (outcome, recovery, release), kept across retries, gone with its
step."""

from dataclasses import replace

from fleetq_server.store import Store
from fleetq_server.store.records import InsertOutcome, StepOutcome
from fleetq_server.submission import SubmitRequest, prepare_step
from tests.contract.conftest import Backend

REQUEST = SubmitRequest(
    type="hello_world", args={}, metadata=None, priority=0, max_retries=3, idempotency_key=None
)
ERROR = {"type": "ValueError", "message": "bad input"}


async def submit(backend: Backend, **changes: object) -> str:
    step = prepare_step(replace(REQUEST, **changes))  # type: ignore[arg-type]
    [outcome] = await backend.store.step_insert_many([step])
    assert isinstance(outcome, InsertOutcome)
    return outcome.step_id


async def test_a_fresh_step_has_no_attempts(backend: Backend) -> None:
    step_id = await submit(backend)
    assert (await backend.store.step_get(step_id)).attempts == ()


async def test_each_ended_execution_leaves_one_row_in_order(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit(backend)

    [first] = await store.step_claim_batch("pod-a", ["hello_world"], 8)
    await store.step_finish_many([StepOutcome(first, "pod-a", error=ERROR)])
    [second] = await store.step_claim_batch("pod-a", ["hello_world"], 8)
    running = await store.step_get(step_id)
    await store.step_finish_many([StepOutcome(second, "pod-a", result_json='"ok"')])
    done = await store.step_get(step_id)

    assert [a.attempt for a in running.attempts] == [first.attempt]
    assert running.claimed_ts == second.claimed_ts and running.claimed_by == "pod-a"
    failed, completed = done.attempts
    assert (failed.attempt, failed.pod_id, failed.outcome, failed.error) == (
        first.attempt,
        "pod-a",
        "failed",
        ERROR,
    )
    assert failed.started_ts == first.claimed_ts and failed.finished_ts >= first.claimed_ts
    assert (completed.attempt, completed.outcome, completed.error) == (
        second.attempt,
        "completed",
        None,
    )


async def test_a_fenced_out_outcome_writes_no_row(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit(backend)
    [claimed] = await store.step_claim_batch("pod-a", ["hello_world"], 8)
    await store.step_finish_many([StepOutcome(claimed, "pod-a", result_json="1")])

    assert await store.step_finish_many([StepOutcome(claimed, "pod-a", result_json="2")]) == [None]
    assert len((await store.step_get(step_id)).attempts) == 1


async def test_release_and_recovery_record_their_attempts(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("leader", 8)
    await store.pod_register("pod-a", 8)
    step_id = await submit(backend)
    [held] = await store.step_claim_batch("pod-a", ["hello_world"], 8)
    await store.step_release([held], "pod-a")
    [again] = await store.step_claim_batch("pod-a", ["hello_world"], 8)
    await backend.age_heartbeat("pod-a", 60)

    outcome, ran = await store.recovery_run("leader", 15, dry_run=False, trigger="manual")

    assert ran and outcome.requeued_steps == [step_id]
    released, lost = (await store.step_get(step_id)).attempts
    assert (released.attempt, released.outcome, released.error) == (held.attempt, "released", None)
    assert (lost.attempt, lost.pod_id, lost.outcome) == (again.attempt, "pod-a", "pod_lost")
    assert lost.error is not None and lost.error["type"] == "PodLost"


async def test_retention_deletes_a_steps_attempts_with_it(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit(backend, max_retries=0)
    [claimed] = await store.step_claim_batch("pod-a", ["hello_world"], 8)
    await store.step_finish_many([StepOutcome(claimed, "pod-a", error=ERROR)])
    await backend.age_step(step_id, 3600)

    assert await store.step_delete_finished_before(60, 100) == 1
    assert await store.step_get_many([step_id]) == []
    if isinstance(store, Store):  # the rows themselves, which only PostgreSQL keeps apart
        async with store._connection() as connection:
            left = await connection.fetchval("SELECT count(*) FROM fleetq_step_attempts")
        assert left == 0
