"""Pod leases and pending expiry against a real PostgreSQL: each pod is judged by the lease
it declares, and pending steps past their expiry are failed as `expired`, never claimed."""

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from fleetq_server.store import Store, open_store
from fleetq_server.submission import SubmitRequest, prepare_step
from tests.support.backdating import age_heartbeat

REQUEST = SubmitRequest(
    type="alpha", args={}, metadata=None, priority=0, max_retries=0, idempotency_key=None
)
# The leader's own threshold in these tests: far shorter than the other pods' leases.
LEADER_THRESHOLD_S = 2.0


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await open_store(database_url, pool_size=4)
    await store.pod_register("leader", 8, LEADER_THRESHOLD_S)
    yield store
    await store.close()


async def _silence(store: Store, pod_id: str, seconds: float) -> None:
    """Move only the last heartbeat back: the lease the pod declared stays as it was."""
    async with store._connection() as connection:
        await connection.execute(
            "UPDATE fleetq_pods SET last_heartbeat_ts = now() - make_interval(secs => $2)"
            " WHERE pod_id = $1",
            pod_id,
            seconds,
        )


async def test_a_pod_is_live_for_its_own_lease_not_the_leaders_threshold(store: Store) -> None:
    await store.pod_register("patient", 8, 60.0)
    await store.pod_heartbeat("patient", 0, 8, 60.0)
    await _silence(store, "patient", 10)  # five leader thresholds without a beat

    outcome, _ = await store.recovery_run(
        "leader", LEADER_THRESHOLD_S, dry_run=False, trigger="manual"
    )
    assert outcome.dead_pods == []
    view = await store.leader_get(LEADER_THRESHOLD_S)
    assert [pod.pod_id for pod in view.live_pods] == ["leader", "patient"]
    stats = await store.queue_stats(LEADER_THRESHOLD_S)
    assert {pod.pod_id for pod in stats.live_pods} == {"leader", "patient"}


async def test_a_pod_past_its_own_lease_is_recovered(store: Store) -> None:
    await store.pod_register("brief", 8, 1.0)
    step = prepare_step(REQUEST)
    await store.step_insert_many([step])
    assert len(await store.step_claim_batch("brief", ["alpha"], 1)) == 1
    await age_heartbeat(store, "brief", 1.5)  # lease and heartbeat back together

    expiry = await store.pod_next_expiry(LEADER_THRESHOLD_S)
    assert expiry is not None and expiry < 0
    outcome, _ = await store.recovery_run(
        "leader", LEADER_THRESHOLD_S, dry_run=False, trigger="manual"
    )
    assert outcome.dead_pods == ["brief"]
    assert outcome.terminal_steps == [step.step_id]


async def test_the_heartbeat_extends_the_lease_by_the_pods_own_threshold(store: Store) -> None:
    await store.pod_register("beating", 8, 1.0)
    await age_heartbeat(store, "beating", 5)
    outcome = await store.pod_heartbeat("beating", 0, 8, 30.0)
    assert outcome.alive
    next_expiry = await store.pod_next_expiry(LEADER_THRESHOLD_S)
    # The leader's lease (2 s) ends first; "beating" now holds 30 s.
    assert next_expiry is not None and next_expiry <= LEADER_THRESHOLD_S
    async with store._connection() as connection:
        seconds = await connection.fetchval(
            "SELECT EXTRACT(EPOCH FROM expires_at - now()) FROM fleetq_pods"
            " WHERE pod_id = 'beating'"
        )
    assert 25 < float(seconds) <= 30


async def test_rows_without_a_lease_are_judged_by_the_readers_threshold(store: Store) -> None:
    await store.pod_register("older-version", 8)  # declares no lease, as before migration 0005
    await _silence(store, "older-version", LEADER_THRESHOLD_S + 1)
    outcome, _ = await store.recovery_run(
        "leader", LEADER_THRESHOLD_S, dry_run=False, trigger="manual"
    )
    assert outcome.dead_pods == ["older-version"]


async def _backdate_expiry(store: Store, step_ids: list[str]) -> None:
    async with store._connection() as connection:
        await connection.execute(
            "UPDATE fleetq_steps SET pending_expires_at = now() - interval '1 second'"
            " WHERE step_id = ANY($1::text[])",
            step_ids,
        )


async def test_pending_steps_past_their_expiry_fail_as_expired(store: Store) -> None:
    due = [prepare_step(replace(REQUEST, pending_expiry_s=60)) for _ in range(3)]
    later = prepare_step(replace(REQUEST, pending_expiry_s=60))
    never = prepare_step(REQUEST)
    await store.step_insert_many([*due, later, never])
    await _backdate_expiry(store, [step.step_id for step in due])

    claimed = await store.step_claim_batch("leader", ["alpha"], 10)
    assert {step.step_id for step in claimed} == {later.step_id, never.step_id}
    assert await store.step_expire_pending(2) == 2
    assert await store.step_expire_pending(10) == 1
    assert await store.step_expire_pending(10) == 0
    for step in due:
        record = await store.step_get(step.step_id)
        assert record.status == "failed"
        assert record.error is not None and record.error["type"] == "expired"
    for step in (later, never):
        assert (await store.step_get(step.step_id)).status == "claimed"
    counts = (await store.queue_stats(LEADER_THRESHOLD_S)).counts_by_status
    assert counts == {"failed": 3, "claimed": 2}


async def test_a_claimed_step_is_not_expired(store: Store) -> None:
    step = prepare_step(replace(REQUEST, pending_expiry_s=60))
    await store.step_insert_many([step])
    assert len(await store.step_claim_batch("leader", ["alpha"], 1)) == 1
    await _backdate_expiry(store, [step.step_id])
    assert await store.step_expire_pending(10) == 0
    assert (await store.step_get(step.step_id)).status == "claimed"


async def test_the_expiry_query_uses_its_partial_index(store: Store) -> None:
    async with store._connection() as connection:
        await connection.execute("SET enable_seqscan = off")
        plan = await connection.fetch(
            "EXPLAIN SELECT step_id FROM fleetq_steps WHERE status = 'pending'"
            " AND pending_expires_at IS NOT NULL AND pending_expires_at <= now()"
            " ORDER BY pending_expires_at LIMIT 10"
        )
        await connection.execute("RESET enable_seqscan")
    assert "fleetq_steps_pending_expiry_idx" in "\n".join(row[0] for row in plan)
