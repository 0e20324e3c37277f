"""Retention against a real PostgreSQL: only old, finished steps and old recovery records go,
in bounded batches, and only the leader's loop deletes anything."""

import secrets
from dataclasses import replace

import pytest

from fleetq_server import errors
from fleetq_server.runtime.retention import RetentionLoop
from fleetq_server.runtime.state import PodState
from fleetq_server.store import Store
from fleetq_server.store.records import StepOutcome
from fleetq_server.submission import prepare_step
from tests.integration.conftest import REQUEST
from tests.support.backdating import age_heartbeat, age_step

DAY_S = 86400.0


@pytest.fixture(autouse=True)
async def pod_a(store: Store) -> None:
    await store.pod_register("pod-a", 8)


async def step_in(store: Store, status: str, *, age_days: float = 0) -> str:
    """A step brought to `status` through the store, its timestamps backdated by `age_days`
    (test-only SQL: the database clock cannot be moved)."""
    step = prepare_step(replace(REQUEST, type=f"t_{secrets.token_hex(4)}"))  # claim only it
    await store.step_insert_many([step])
    if status != "pending":
        [claimed] = await store.step_claim_batch("pod-a", [step.type], 1)
        if status != "claimed":
            error = {"type": "E", "message": "x"} if status == "failed" else None
            await store.step_finish_many(
                [StepOutcome(claimed, "pod-a", result_json="1", error=error)]
            )
    await age_step(store, step.step_id, age_days * DAY_S)
    return step.step_id


async def remaining(store: Store, step_ids: list[str]) -> list[str]:
    kept = []
    for step_id in step_ids:
        try:
            await store.step_get(step_id)
            kept.append(step_id)
        except errors.NotFoundError:
            pass
    return kept


@pytest.mark.parametrize(
    ("is_leader", "retention_s", "kept"),
    [(True, 7 * DAY_S, 0), (False, 7 * DAY_S, 1), (True, 0, 1)],
    ids=["leader-deletes", "non-leader-keeps", "retention-zero-keeps"],
)
async def test_the_loop_deletes_only_on_the_leader_and_when_enabled(
    store: Store, is_leader: bool, retention_s: float, kept: int
) -> None:
    step_id = await step_in(store, "completed", age_days=8)
    await store.pod_register("gone", 4)
    await store.pod_mark_down("gone")
    await age_heartbeat(store, "gone", 8 * DAY_S)
    state = PodState(base_pod_id="pod-a", max_capacity=8, is_leader=is_leader)
    await RetentionLoop(store, state, interval=60, retention_s=retention_s).run_once()
    assert len(await remaining(store, [step_id])) == kept
    async with store._connection() as connection:
        pods = await connection.fetchval("SELECT count(*) FROM fleetq_pods WHERE pod_id = 'gone'")
    assert pods == kept
