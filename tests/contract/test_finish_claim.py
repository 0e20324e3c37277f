"""The store contract for an outcome write that also claims (`step_finish_claim`): the
outcomes are recorded as `step_finish_many` records them, fenced the same way, and the
claim in the same statement takes at most its limit, best first, never a step whose
outcome it writes, and nothing for a pod that is not up."""

from dataclasses import replace

from fleetq_server.store.ports import StorePort
from fleetq_server.store.records import ClaimedStep, StepOutcome
from tests.contract.conftest import Backend, submit_hello


async def claim(store: StorePort, count: int) -> list[ClaimedStep]:
    for _ in range(count):
        await submit_hello(store)
    claimed = await store.step_claim_batch("pod-a", ["hello_world"], count)
    assert len(claimed) == count
    return claimed


async def one_claimed_one_waiting(store: StorePort) -> tuple[ClaimedStep, str]:
    """pod-a up, holding one step, and another step pending."""
    await store.pod_register("pod-a", 8)
    [step] = await claim(store, 1)
    return step, await submit_hello(store)


async def test_outcomes_are_recorded_and_the_freed_slots_claimed_best_first(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    done, failed = await claim(store, 2)
    low = await submit_hello(store, priority=0)
    high = await submit_hello(store, priority=5)
    extra = await submit_hello(store, priority=0)
    statuses, claimed = await store.step_finish_claim(
        [
            StepOutcome(done, "pod-a", result_json='{"ok": 1}'),
            StepOutcome(failed, "pod-a", error={"type": "E", "message": "m"}, backoff_s=0.0),
        ],
        "pod-a",
        ["hello_world"],
        2,
    )
    assert statuses == ["completed", "pending"]
    assert [step.step_id for step in claimed] == [high, low]
    assert all(step.attempt == 1 for step in claimed)
    # The requeued step was claimed in the statement's snapshot: not taken back by it.
    assert (await store.step_get(failed.step_id)).status == "pending"
    assert (await store.step_get(extra)).status == "pending"
    assert (await store.step_get(done.step_id)).result == {"ok": 1}
    stats = await store.queue_stats(15)
    assert stats.counts_by_status["completed"] == 1
    assert stats.counts_by_status["claimed"] == 2
    assert stats.counts_by_status["pending"] == 2


async def test_a_fenced_outcome_changes_nothing_while_the_claim_still_happens(
    backend: Backend,
) -> None:
    store = backend.store
    step, waiting = await one_claimed_one_waiting(store)
    stale = replace(step, attempt=step.attempt - 1)  # a claim lost and made again
    statuses, claimed = await store.step_finish_claim(
        [StepOutcome(stale, "pod-a", result_json="1")], "pod-a", ["hello_world"], 8
    )
    assert statuses == [None]
    assert [c.step_id for c in claimed] == [waiting]
    stored = await store.step_get(step.step_id)
    assert (stored.status, stored.attempt, stored.claimed_by) == ("claimed", 1, "pod-a")


async def test_a_pod_that_is_down_records_its_outcomes_but_claims_nothing(
    backend: Backend,
) -> None:
    store = backend.store
    step, waiting = await one_claimed_one_waiting(store)
    await store.pod_mark_down("pod-a")
    statuses, claimed = await store.step_finish_claim(
        [StepOutcome(step, "pod-a", result_json="1")], "pod-a", ["hello_world"], 8
    )
    assert (statuses, claimed) == (["completed"], [])
    assert (await store.step_get(waiting)).status == "pending"
