"""The store contract for writes whose answer was lost (a primary crashing between commit and
reply): orphaned claims are given back, fenced by the pod and its running set, and a repeated
outcome write changes nothing while the step still shows who recorded it."""

from fleetq_server.store.records import StepOutcome
from tests.contract.conftest import Backend, submit_hello


async def test_orphaned_claims_are_released_without_a_retry_and_nothing_else(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    await store.pod_register("pod-b", 8)
    orphan, running, done = (
        await submit_hello(store),
        await submit_hello(store),
        await submit_hello(store),
    )
    claimed = {s.step_id: s for s in await store.step_claim_batch("pod-a", ["hello_world"], 3)}
    assert set(claimed) == {orphan, running, done}
    others, pending = await submit_hello(store), await submit_hello(store)
    [theirs] = await store.step_claim_batch("pod-b", ["hello_world"], 1)
    assert theirs.step_id == others
    assert await store.step_finish_many([StepOutcome(claimed[done], "pod-a", "1")]) == ["completed"]

    released = await store.step_release_orphans("pod-a", [running])

    assert released == [(orphan, "hello_world")]
    step = await store.step_get(orphan)
    assert (step.status, step.claimed_by, step.retry_count) == ("pending", None, 0)
    assert [(await store.step_get(s)).status for s in (running, others, done, pending)] == [
        "claimed",
        "claimed",
        "completed",
        "pending",
    ]
    assert (await store.step_get(others)).claimed_by == "pod-b"
    # The lost claim's token is spent: its outcome is fenced out, the next claim runs.
    lost = StepOutcome(claimed[orphan], "pod-a", result_json='"late"')
    assert await store.step_finish_many([lost]) == [None]
    again = await store.step_claim_batch("pod-a", ["hello_world"], 2)
    assert [s.step_id for s in again] == [orphan, pending]
    assert again[0].attempt == claimed[orphan].attempt + 1
    assert await store.step_release_orphans("pod-a", [running, orphan, pending]) == []


async def test_a_repeated_outcome_write_changes_nothing_and_its_first_write_shows(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    ok_id, retried_id, failed_id = (
        await submit_hello(store),
        await submit_hello(store, max_retries=1),
        await submit_hello(store, max_retries=0),
    )
    claimed = {s.step_id: s for s in await store.step_claim_batch("pod-a", ["hello_world"], 3)}
    error = {"type": "E", "message": "boom"}
    outcomes = [
        StepOutcome(claimed[ok_id], "pod-a", result_json='{"n":1}'),
        StepOutcome(claimed[retried_id], "pod-a", error=error, backoff_s=60),
        StepOutcome(claimed[failed_id], "pod-a", error=error),
    ]
    assert await store.step_finish_many(outcomes) == ["completed", "pending", "failed"]
    before = [await store.step_get(s) for s in (ok_id, retried_id, failed_id)]

    assert await store.step_finish_many(outcomes) == [None, None, None]

    after = [await store.step_get(s) for s in (ok_id, retried_id, failed_id)]
    assert after == before
    # What the completer reads to know the first write was its own: the attempt, the
    # holder (kept when the step completes or fails, cleared when it is requeued), the error.
    assert [(s.attempt, s.claimed_by, s.error) for s in after] == [
        (1, "pod-a", None),
        (1, None, error),
        (1, "pod-a", error),
    ]
