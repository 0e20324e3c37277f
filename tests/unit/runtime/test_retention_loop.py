"""RetentionLoop on the in-memory store: the leader deletes old finished work in batches."""

import pytest

from fleetq_server.runtime import retention
from fleetq_server.runtime.retention import RetentionLoop
from fleetq_server.runtime.state import PodState
from fleetq_server.store.records import StepOutcome
from tests.support.memory_store import MemoryStore
from tests.unit.runtime.helpers import claim_one, submit

DAY_S = 86400.0


async def finished_long_ago(store: MemoryStore) -> str:
    step = await claim_one(store)
    await store.step_finish_many([StepOutcome(step, "pod-a", result_json="1")])
    store.age_step(step.step_id, 8 * DAY_S)
    return step.step_id


@pytest.mark.parametrize(
    ("is_leader", "retention_s", "kept"),
    [(True, 7 * DAY_S, 0), (False, 7 * DAY_S, 1), (True, 0, 1)],
    ids=["leader-deletes", "non-leader-keeps", "retention-zero-keeps"],
)
async def test_deletes_only_on_the_leader_and_when_enabled(
    store: MemoryStore, is_leader: bool, retention_s: float, kept: int
) -> None:
    await finished_long_ago(store)
    state = PodState(base_pod_id="pod-a", max_capacity=4, is_leader=is_leader)
    await RetentionLoop(store, state, interval=60, retention_s=retention_s).run_once()
    assert len(store.steps) == kept


@pytest.mark.parametrize(
    ("retention_s", "worker_retention_s", "kept"),
    [(0, DAY_S, ["holding", "seen-lately"]), (7 * DAY_S, 0, ["holding", "seen-lately", "unseen"])],
    ids=["workers-by-their-own-age", "worker-retention-zero-keeps"],
)
async def test_the_leader_forgets_workers_unseen_for_the_worker_retention(
    store: MemoryStore, retention_s: float, worker_retention_s: float, kept: list[str]
) -> None:
    await submit(store, type="leased")
    await store.step_lease_claim("pod-a", "holding", ["leased"], 1, 3600)
    for worker_id in ("unseen", "seen-lately"):
        await store.step_lease_claim("pod-a", worker_id, ["nothing"], 1, 60)
    for worker_id in ("unseen", "holding"):
        store.age_worker(worker_id, 2 * DAY_S)
    state = PodState(base_pod_id="pod-a", max_capacity=4, is_leader=True)
    loop = RetentionLoop(
        store, state, interval=60, retention_s=retention_s, worker_retention_s=worker_retention_s
    )

    await loop.run_once()

    assert sorted(store.workers) == kept


async def test_a_run_that_spends_its_budget_runs_again_at_once(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "BATCH_SIZE", 1)
    monkeypatch.setattr(retention, "MAX_BATCHES_PER_RUN", 2)
    for _ in range(3):
        await finished_long_ago(store)
    state = PodState(base_pod_id="pod-a", max_capacity=4, is_leader=True)
    loop = RetentionLoop(store, state, interval=60, retention_s=7 * DAY_S)
    await loop.run_once()
    assert len(store.steps) == 1 and loop._wake_event.is_set()
    await loop.run_once()
    assert not store.steps


@pytest.mark.parametrize(("is_leader", "status"), [(True, "failed"), (False, "pending")])
async def test_the_leader_fails_pending_steps_past_their_expiry_even_without_retention(
    store: MemoryStore, is_leader: bool, status: str
) -> None:
    expiring = await submit(store, pending_expiry_s=30.0)
    kept = await submit(store)
    store.advance(31)
    state = PodState(base_pod_id="pod-a", max_capacity=4, is_leader=is_leader)
    await RetentionLoop(store, state, interval=60, retention_s=0).run_once()
    record = await store.step_get(expiring)
    assert record.status == status
    assert (record.error or {}).get("type") == ("expired" if is_leader else None)
    assert (await store.step_get(kept)).status == "pending"
    assert await store.step_claim_batch("pod-a", ["echo"], 5) != []  # `kept` only
    assert (await store.step_get(expiring)).status == status
