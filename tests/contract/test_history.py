"""The store contract for what the fleet did lately: steps completed and failed per minute
(counted as they finish, by whichever statement finishes them) and the recorded recovery
cycles, newest first, a keyset page at a time."""

import itertools
from datetime import timedelta

from fleetq_server.store.ports import StorePort
from fleetq_server.store.records import RecoveryRecordPosition, StepOutcome, ThroughputMinute
from tests.contract.conftest import Backend, submit_hello

FAILURE = {"type": "E", "message": "x"}


def totals(series: list[ThroughputMinute]) -> tuple[int, int]:
    return sum(m.completed for m in series), sum(m.failed for m in series)


async def finish(store: StorePort, *, completed: int, failed: int, retried: int = 0) -> None:
    """Finish steps as the pod's outcome write does, all in one statement: `completed`
    successes, `failed` terminal failures and `retried` failures with retries left (backing
    off, so that later claims leave them be)."""
    for n in range(completed + failed + retried):
        await submit_hello(store, max_retries=0 if n < completed + failed else 3)
    claimed = await store.step_claim_batch("pod-a", ["hello_world"], completed + failed + retried)
    outcomes = [
        StepOutcome(step, "pod-a", result_json="1")
        if index < completed
        else StepOutcome(step, "pod-a", error=FAILURE, backoff_s=600)
        for index, step in enumerate(claimed)
    ]
    await store.step_finish_many(outcomes)


async def test_throughput_counts_the_steps_each_statement_completed_and_failed(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("pod-a", 32)
    await finish(store, completed=5, failed=2, retried=3)
    await finish(store, completed=1, failed=1)

    series = await store.throughput_list(10)

    # A retried failure (back to pending) is not a failed step.
    assert totals(series) == (6, 3)


async def test_throughput_lists_every_minute_oldest_first_zeros_included(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    await finish(store, completed=1, failed=0)

    series = await store.throughput_list(7)

    assert len(series) == 7
    starts = [m.minute_ts for m in series]
    assert all(s.second == 0 and s.microsecond == 0 for s in starts)
    assert [b - a for a, b in itertools.pairwise(starts)] == [timedelta(minutes=1)] * 6
    # The step finished in the last minute or, across a minute's turn, the one before.
    assert sum(m.completed for m in series[-2:]) == 1
    assert all(m == ThroughputMinute(m.minute_ts, 0, 0) for m in series[:-2])


async def test_throughput_counts_other_finishing_paths_but_not_cancels(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("leader", 8)
    await store.pod_register("pod-a", 8)
    cancelled = await submit_hello(store)
    assert await store.step_cancel(cancelled) == "cancelled"
    orphan = await submit_hello(store, max_retries=0)
    [claimed] = await store.step_claim_batch("pod-a", ["hello_world"], 1)
    assert claimed.step_id == orphan
    await backend.age_heartbeat("pod-a", 60)
    outcome, _ = await store.recovery_run("leader", 15, dry_run=False, trigger="manual")
    assert outcome.terminal_steps == [orphan]

    # Recovery's failure counts; the cancel does not (it is neither completed nor failed).
    assert totals(await store.throughput_list(5)) == (0, 1)


async def test_a_retried_failed_step_that_completes_counts_once_each(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit_hello(store, max_retries=0)
    [step] = await store.step_claim_batch("pod-a", ["hello_world"], 1)
    assert await store.step_finish_many([StepOutcome(step, "pod-a", error=FAILURE)]) == ["failed"]
    await store.step_retry(step_id)
    assert totals(await store.throughput_list(5)) == (0, 1)  # the retry takes nothing back
    [again] = await store.step_claim_batch("pod-a", ["hello_world"], 1)
    assert await store.step_finish_many([StepOutcome(again, "pod-a", result_json="1")]) == [
        "completed"
    ]

    assert totals(await store.throughput_list(5)) == (1, 1)


async def test_recovery_records_page_newest_first_without_dry_runs(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("leader", 8)
    cycle_ids = []
    for _ in range(3):
        outcome, ran = await store.recovery_run("leader", 15, dry_run=False, trigger="manual")
        assert ran
        cycle_ids.append(outcome.cycle_id)
    await store.recovery_run("leader", 15, dry_run=True, trigger="manual")

    first = await store.recovery_record_list_page(None, 2)
    last = first[-1]
    rest = await store.recovery_record_list_page(
        RecoveryRecordPosition(last.finished_ts, last.outcome.cycle_id), 2
    )

    assert [r.outcome.cycle_id for r in first + rest] == cycle_ids[::-1]
    assert all(r.leader_pod_id == "leader" and r.trigger == "manual" for r in first + rest)
    assert all(r.started_ts <= r.finished_ts for r in first + rest)
    assert await store.recovery_record_list_page(None, 0) == []


async def test_a_recovery_record_keeps_what_its_cycle_found(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("leader", 8)
    await store.pod_register("pod-a", 8)
    orphan = await submit_hello(store)
    await store.step_claim_batch("pod-a", ["hello_world"], 1)
    await backend.age_heartbeat("pod-a", 60)
    outcome, _ = await store.recovery_run("leader", 15, dry_run=False, trigger="automatic")

    [record] = await store.recovery_record_list_page(None, 5)

    assert record.trigger == "automatic"
    assert record.outcome.cycle_id == outcome.cycle_id
    assert record.outcome.dead_pods == ["pod-a"]
    assert record.outcome.requeued_steps == [orphan]
    assert (record.outcome.orphaned_steps_found, record.outcome.terminal_steps) == (1, [])
