"""Pod leases and bounded queue statistics, on both backends: each pod is live for the lease
it declared, whatever the reader's threshold; steps by type name the top types only."""

from __future__ import annotations

from dataclasses import replace

from fleetq_server.store.pods import OTHER_TYPES
from fleetq_server.submission import SubmitRequest, prepare_step
from tests.contract.conftest import Backend

LEADER_THRESHOLD_S = 2.0
REQUEST = SubmitRequest("alpha", {}, None, 0, 0, None)


async def test_a_pod_is_judged_by_its_own_lease(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("leader", 8, LEADER_THRESHOLD_S)
    await store.pod_register("patient", 8, 60.0)
    await store.pod_register("brief", 8, 1.0)
    await backend.age_heartbeat("patient", 10)  # 50 s of its lease left
    await backend.age_heartbeat("brief", 1.5)  # its lease ended 0.5 s ago

    live = [pod.pod_id for pod in (await store.leader_get(LEADER_THRESHOLD_S)).live_pods]
    assert live == ["leader", "patient"]
    expiry = await store.pod_next_expiry(LEADER_THRESHOLD_S)
    assert expiry is not None and expiry < 0
    outcome, _ = await store.recovery_run(
        "leader", LEADER_THRESHOLD_S, dry_run=False, trigger="manual"
    )
    assert outcome.dead_pods == ["brief"]


async def test_a_heartbeat_renews_the_lease_by_the_pods_own_threshold(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("leader", 8, LEADER_THRESHOLD_S)
    await store.pod_register("beating", 8, 1.0)
    assert (await store.pod_heartbeat("beating", 0, 8, 30.0)).alive
    await backend.age_heartbeat("beating", 5)  # past its first lease, within the renewed one
    live = [pod.pod_id for pod in (await store.leader_get(LEADER_THRESHOLD_S)).live_pods]
    assert live == ["leader", "beating"]


async def test_steps_by_type_names_the_top_types_and_sums_the_rest(backend: Backend) -> None:
    store = backend.store
    for index in range(6):
        steps = [prepare_step(replace(REQUEST, type=f"t{index}")) for _ in range(6 - index)]
        await store.step_insert_many(steps)
    stats = await store.queue_stats(LEADER_THRESHOLD_S, top_types=3)
    assert stats.steps_by_type == {"t0": 6, "t1": 5, "t2": 4, OTHER_TYPES: 3 + 2 + 1}
    assert (await store.queue_stats(LEADER_THRESHOLD_S, top_types=6)).steps_by_type == {
        f"t{index}": 6 - index for index in range(6)
    }
