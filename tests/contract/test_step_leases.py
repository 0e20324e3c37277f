"""The store contract for leased claims (ClaimSteps): claim order and the roster of
workers, outcomes and extensions fenced by attempt and lease, the leader's expiry
(retry or fail as `lease_expired`), and recovery leaving leased steps to their lease; leased
claims within the fleet-wide type limits (#16), ended attempts recorded (#14), and a cancel
request seen by ExtendLease."""

import pytest

from fleetq_server import errors
from fleetq_server.store.records import LeaseOutcome, TypeLimit
from tests.contract.conftest import Backend, submit_hello

# A lease already over when granted: the database clock is past it at once, no waiting.
ENDED = -1.0


async def test_claim_leases_in_claim_order_and_records_the_worker(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    low = await submit_hello(store, priority=0)
    high = await submit_hello(store, priority=5)
    await submit_hello(store, type="other")
    leased = await store.step_lease_claim("pod-a", "w1", ["hello_world"], 10, 30)
    assert [s.step_id for s in leased] == [high, low]
    assert all(s.attempt == 1 for s in leased)
    record = await store.step_get(high)
    assert (record.status, record.claimed_by) == ("claimed", "w1")
    assert leased[0].lease_expires_at > record.created_ts
    [worker] = await store.worker_list(3600, 10)
    assert (worker.worker_id, worker.types, worker.in_flight) == ("w1", ["hello_world"], 2)
    assert await store.step_lease_claim("pod-a", "w1", ["hello_world"], 10, 30) == []


async def test_a_pod_not_up_leases_nothing(backend: Backend) -> None:
    store = backend.store
    await submit_hello(store)
    assert await store.step_lease_claim("ghost", "w1", ["hello_world"], 10, 30) == []


async def test_complete_is_fenced_by_attempt_and_explains_refusals(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit_hello(store)
    [leased] = await store.step_lease_claim("pod-a", "w1", ["hello_world"], 1, 30)
    stale = LeaseOutcome(step_id, leased.attempt + 1, result_json="1")
    unknown = LeaseOutcome("step_nope", 1, result_json="1")
    good = LeaseOutcome(step_id, leased.attempt, result_json='{"ok": 5}')
    answers = await store.step_lease_finish_many([stale, unknown, good], [])
    assert isinstance(answers[0], errors.StaleAttemptError)
    assert isinstance(answers[1], errors.NotFoundError)
    assert answers[2] == "completed"
    record = await store.step_get(step_id)
    assert (record.status, record.result) == ("completed", {"ok": 5})
    [again] = await store.step_lease_finish_many([good], [])
    assert isinstance(again, errors.StaleAttemptError) and "completed" in str(again)


async def test_failures_retry_after_their_backoff_or_fail_when_not_retryable(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    retried = await submit_hello(store, max_retries=3)
    final = await submit_hello(store, max_retries=3, args={"n": 2})
    leases = await store.step_lease_claim("pod-a", "w1", ["hello_world"], 2, 30)
    attempts = {s.step_id: s.attempt for s in leases}
    error = {"type": "Boom", "message": "it broke"}
    answers = await store.step_lease_finish_many(
        [
            LeaseOutcome(retried, attempts[retried], error=error),
            LeaseOutcome(final, attempts[final], error=error, retryable=False),
        ],
        [100.0] * 4,
    )
    assert answers == ["pending", "failed"]
    again = await store.step_get(retried)
    assert (again.retry_count, again.error) == (1, error)
    # In backoff for 100 s: not claimable yet.
    assert await store.step_lease_claim("pod-a", "w1", ["hello_world"], 2, 30) == []
    due = await store.step_next_due(["hello_world"])
    assert due is not None and 90 < due <= 100
    failed = await store.step_get(final)
    assert (failed.status, failed.retry_count) == ("failed", 0)


async def test_extend_moves_the_lease_and_is_fenced(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit_hello(store)
    [leased] = await store.step_lease_claim("pod-a", "w1", ["hello_world"], 1, 10)
    extended = await store.step_lease_extend(step_id, leased.attempt, 600)
    assert (extended.lease_expires_at - leased.lease_expires_at).total_seconds() > 500
    assert extended.cancel_requested is False
    with pytest.raises(errors.StaleAttemptError):
        await store.step_lease_extend(step_id, leased.attempt - 1, 600)
    with pytest.raises(errors.NotFoundError):
        await store.step_lease_extend("step_nope", 1, 600)
    pod_step = await submit_hello(store, type="pods_only")
    [claimed] = await store.step_claim_batch("pod-a", ["pods_only"], 1)
    with pytest.raises(errors.StaleAttemptError):  # a pod's claim has no lease to extend
        await store.step_lease_extend(pod_step, claimed.attempt, 600)


async def test_an_ended_lease_refuses_writes_until_the_leader_requeues_it(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit_hello(store, max_retries=1)
    [first] = await store.step_lease_claim("pod-a", "w1", ["hello_world"], 1, ENDED)
    assert (await store.step_lease_next_expiry() or 0) < 0
    [late] = await store.step_lease_finish_many([LeaseOutcome(step_id, first.attempt, "1")], [])
    assert isinstance(late, errors.StaleAttemptError) and "expired" in str(late)
    with pytest.raises(errors.StaleAttemptError):
        await store.step_lease_extend(step_id, first.attempt, 30)

    [expired] = await store.step_lease_expire(100)
    assert (expired.step_id, expired.status, expired.type) == (step_id, "pending", "hello_world")
    assert await store.step_lease_expire(100) == []  # idempotent
    record = await store.step_get(step_id)
    assert record.retry_count == 1 and record.error is not None
    assert record.error["type"] == "lease_expired"
    assert await store.step_lease_next_expiry() is None

    [second] = await store.step_lease_claim("pod-a", "w2", ["hello_world"], 1, ENDED)
    assert second.attempt == first.attempt + 1
    [last] = await store.step_lease_expire(100)
    assert last.status == "failed"  # past max_retries
    final = await store.step_get(second.step_id)
    assert final.status == "failed" and final.error is not None
    assert final.error["type"] == "lease_expired"


async def test_recovery_leaves_leased_steps_to_their_lease(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("leader", 8)
    await store.pod_register("pod-b", 8)
    leased_id = await submit_hello(store)
    # Leased through pod-b, which then dies: the worker still holds the step.
    [leased] = await store.step_lease_claim("pod-b", "w1", ["hello_world"], 1, 600)
    await backend.age_heartbeat("pod-b", 60)
    outcome, _ = await store.recovery_run("leader", 15, dry_run=False, trigger="manual")
    assert outcome.dead_pods == ["pod-b"] and outcome.orphaned_steps_found == 0
    assert (await store.step_get(leased_id)).status == "claimed"
    [answer] = await store.step_lease_finish_many(
        [LeaseOutcome(leased_id, leased.attempt, "2")], []
    )
    assert answer == "completed"


async def test_a_pod_claim_after_a_lease_is_the_pods_again(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("leader", 8)
    await store.pod_register("pod-b", 8)
    step_id = await submit_hello(store)
    await store.step_lease_claim("leader", "w1", ["hello_world"], 1, ENDED)
    await store.step_lease_expire(100)
    [claimed] = await store.step_claim_batch("pod-b", ["hello_world"], 1)
    assert claimed.step_id == step_id
    await backend.age_heartbeat("pod-b", 60)
    outcome, _ = await store.recovery_run("leader", 15, dry_run=False, trigger="manual")
    assert outcome.requeued_steps == [step_id]  # no lease left over to shield it


async def test_release_gives_leases_back_without_spending_a_retry(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit_hello(store)
    [leased] = await store.step_lease_claim("pod-a", "w1", ["hello_world"], 1, 30)
    [stale] = await store.step_lease_release([(step_id, leased.attempt - 1)])
    assert isinstance(stale, errors.StaleAttemptError)
    assert await store.step_lease_release([(step_id, leased.attempt)]) == ["pending"]
    record = await store.step_get(step_id)
    assert (record.status, record.retry_count, record.claimed_by) == ("pending", 0, None)
    [worker] = await store.worker_list(3600, 10)
    assert worker.in_flight == 0


async def test_leased_claims_take_only_the_room_a_type_limit_leaves(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    await store.type_limit_put(TypeLimit("hello_world", max_concurrency=2))
    for _ in range(4):
        await submit_hello(store)
    [pods] = await store.step_claim_batch("pod-a", ["hello_world"], 1)
    leased = await store.step_lease_claim("pod-a", "w1", ["hello_world"], 10, 30)
    assert len(leased) == 1  # the pod's claim and the lease share the limit of 2
    assert await store.step_lease_claim("pod-a", "w2", ["hello_world"], 10, 30) == []
    assert await store.step_claim_batch("pod-a", ["hello_world"], 10) == []
    assert pods.step_id != leased[0].step_id


async def test_leased_claims_spend_the_rate_limit_tokens(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    await store.type_limit_put(TypeLimit("hello_world", rate_per_second=0.001, burst=2))
    for _ in range(4):
        await submit_hello(store)
    assert len(await store.step_lease_claim("pod-a", "w1", ["hello_world"], 10, 30)) == 2
    assert await store.step_claim_batch("pod-a", ["hello_world"], 10) == []


async def test_every_ended_leased_attempt_is_recorded(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit_hello(store, max_retries=5)
    [first] = await store.step_lease_claim("pod-a", "w1", ["hello_world"], 1, 30)
    assert await store.step_lease_release([(step_id, first.attempt)]) == ["pending"]
    [second] = await store.step_lease_claim("pod-a", "w2", ["hello_world"], 1, 30)
    failure = LeaseOutcome(step_id, second.attempt, error={"type": "E", "message": "boom"})
    assert await store.step_lease_finish_many([failure], [0.0] * 6) == ["pending"]
    [third] = await store.step_lease_claim("pod-a", "w3", ["hello_world"], 1, ENDED)
    [expired] = await store.step_lease_expire(100)
    assert expired.status == "pending"
    [fourth] = await store.step_lease_claim("pod-a", "w4", ["hello_world"], 1, 30)
    done = LeaseOutcome(step_id, fourth.attempt, result_json="7")
    assert await store.step_lease_finish_many([done], []) == ["completed"]

    record = await store.step_get(step_id)
    assert [(a.attempt, a.pod_id, a.outcome) for a in record.attempts] == [
        (first.attempt, "w1", "released"),
        (second.attempt, "w2", "failed"),
        (third.attempt, "w3", "lease_expired"),
        (fourth.attempt, "w4", "completed"),
    ]
    assert record.attempts[1].error == {"type": "E", "message": "boom"}
    expiry_error = record.attempts[2].error
    assert expiry_error is not None and expiry_error["type"] == "lease_expired"
    assert all(a.started_ts is not None and a.finished_ts >= a.started_ts for a in record.attempts)


async def test_a_cancelled_leased_step_is_told_by_extend_and_ends_cancelled(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit_hello(store)
    [leased] = await store.step_lease_claim("pod-a", "w1", ["hello_world"], 1, 30)
    assert await store.step_cancel(step_id) == "claimed"
    extended = await store.step_lease_extend(step_id, leased.attempt, 30)
    assert extended.cancel_requested is True
    failure = LeaseOutcome(step_id, leased.attempt, error={"type": "E", "message": "stopped"})
    assert await store.step_lease_finish_many([failure], [0.0]) == ["cancelled"]
    record = await store.step_get(step_id)
    assert record.status == "cancelled" and record.retry_count == 0
    assert [(a.pod_id, a.outcome) for a in record.attempts] == [("w1", "cancelled")]


async def test_an_expired_lease_of_a_cancelled_step_ends_it_cancelled(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step_id = await submit_hello(store)
    await store.step_lease_claim("pod-a", "w1", ["hello_world"], 1, ENDED)
    assert await store.step_cancel(step_id) == "claimed"
    [expired] = await store.step_lease_expire(100)
    assert expired.status == "cancelled"
    record = await store.step_get(step_id)
    assert [a.outcome for a in record.attempts] == ["lease_expired"]
