"""The store contract for attempt history: one entry per ended execution, written by the
statement that ended it (outcome, recovery, release), kept across retries, gone with its
step. The attempt that finishes its step is kept by the step row, not by a row of its own,
until RetryStep puts the step back to pending."""

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


async def attempt_rows(store: object, step_id: str) -> int | None:
    """How many attempt rows PostgreSQL keeps for `step_id` (None: the memory store, which
    keeps no rows apart from its steps)."""
    if not isinstance(store, Store):
        return None
    async with store._connection() as connection:
        rows: int = await connection.fetchval(
            "SELECT count(*) FROM fleetq_step_attempts WHERE step_id = $1", step_id
        )
    return rows


async def test_an_attempt_that_finishes_its_step_is_read_from_the_step_row(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit(backend)
    [claimed] = await store.step_claim_batch("pod-a", ["hello_world"], 8)
    await store.step_finish_many([StepOutcome(claimed, "pod-a", result_json="1")])

    [completed] = (await store.step_get(step_id)).attempts
    assert (completed.attempt, completed.pod_id, completed.outcome, completed.error) == (
        claimed.attempt,
        "pod-a",
        "completed",
        None,
    )
    assert completed.started_ts == claimed.claimed_ts
    assert completed.finished_ts >= claimed.claimed_ts
    assert await attempt_rows(store, step_id) in (0, None)


async def test_retry_step_keeps_the_attempt_that_failed_the_step_as_it_was(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit(backend, max_retries=0)
    [first] = await store.step_claim_batch("pod-a", ["hello_world"], 8)
    await store.step_finish_many([StepOutcome(first, "pod-a", error=ERROR)])
    [failed] = (await store.step_get(step_id)).attempts

    await store.step_retry(step_id)
    [second] = await store.step_claim_batch("pod-a", ["hello_world"], 8)
    await store.step_finish_many([StepOutcome(second, "pod-a", result_json="1")])

    kept, completed = (await store.step_get(step_id)).attempts
    assert kept == failed
    assert (kept.attempt, kept.outcome, kept.error) == (first.attempt, "failed", ERROR)
    assert (completed.attempt, completed.outcome) == (second.attempt, "completed")
    assert await attempt_rows(store, step_id) in (1, None)


async def test_retry_step_after_recovery_failed_the_step_lists_that_attempt_once(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("leader", 8)
    await store.pod_register("pod-a", 8)
    step_id = await submit(backend, max_retries=0)
    [lost] = await store.step_claim_batch("pod-a", ["hello_world"], 8)
    await backend.age_heartbeat("pod-a", 60)
    outcome, ran = await store.recovery_run("leader", 15, dry_run=False, trigger="manual")
    assert ran and outcome.terminal_steps == [step_id]

    await store.step_retry(step_id)
    [again] = await store.step_claim_batch("leader", ["hello_world"], 8)
    await store.step_finish_many([StepOutcome(again, "leader", result_json="1")])

    attempts = (await store.step_get(step_id)).attempts
    assert [(a.attempt, a.pod_id, a.outcome) for a in attempts] == [
        (lost.attempt, "pod-a", "pod_lost"),
        (again.attempt, "leader", "completed"),
    ]


async def test_retention_deletes_a_steps_attempts_with_it(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit(backend, max_retries=1)
    for _ in range(2):  # a retried attempt (its own row), then the one that fails the step
        [claimed] = await store.step_claim_batch("pod-a", ["hello_world"], 8)
        await store.step_finish_many([StepOutcome(claimed, "pod-a", error=ERROR)])
    assert await attempt_rows(store, step_id) in (1, None)
    await backend.age_step(step_id, 3600)

    assert await store.step_delete_finished_before(60, 100) == 1
    assert await store.step_get_many([step_id]) == []
    assert await attempt_rows(store, step_id) in (0, None)
