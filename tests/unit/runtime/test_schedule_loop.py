"""ScheduleLoop on the in-memory store: the leader fires each due tick exactly once."""

import math
from datetime import UTC, datetime, timedelta

from fleetq_server.runtime.scheduler import ScheduleLoop
from fleetq_server.runtime.state import PodState
from fleetq_server.store.records import ScheduleSpec
from tests.support.memory_store import MemoryStore

EVERY_10S = ScheduleSpec(name="tick", step_type="hello_world", interval_seconds=10)


def leader(pod_id: str = "pod-a") -> PodState:
    return PodState(base_pod_id=pod_id, max_capacity=4, is_leader=True, database_ok=True)


def last_tick() -> datetime:
    """The latest 10-second tick at or before now (the store's clock starts at now)."""
    return datetime.fromtimestamp(math.floor(datetime.now(UTC).timestamp() / 10) * 10, UTC)


def keys(store: MemoryStore) -> list[str]:
    return sorted(step.idempotency_key for step in store.steps.values())


async def test_the_leader_fires_a_due_tick_once_with_its_key(store: MemoryStore) -> None:
    tick = last_tick()
    await store.schedule_create(EVERY_10S, tick)
    loop = ScheduleLoop(store, leader(), interval=1)

    await loop.run_once()
    await loop.run_once()

    assert keys(store) == [f"schedule:tick:{tick:%Y-%m-%dT%H:%M:%SZ}"]
    record = await store.schedule_get("tick")
    assert record.next_fire_ts == tick + timedelta(seconds=10)
    assert record.last_fire_ts == tick
    assert record.last_step_id in store.steps


async def test_a_follower_fires_nothing(store: MemoryStore) -> None:
    await store.schedule_create(EVERY_10S, last_tick())
    follower = PodState(base_pod_id="pod-a", max_capacity=4, database_ok=True)
    await ScheduleLoop(store, follower, interval=1).run_once()
    assert store.steps == {}


async def test_two_pods_that_both_think_they_lead_fire_a_tick_once(store: MemoryStore) -> None:
    tick = last_tick()
    await store.schedule_create(EVERY_10S, tick)
    first = ScheduleLoop(store, leader("pod-a"), interval=1)
    second = ScheduleLoop(store, leader("pod-b"), interval=1)
    # Both read the schedule as due before either moves it on.
    _, due = await store.schedule_list_due(10)
    now = datetime.now(UTC)
    await first._fire(due[0], now)
    await second._fire(due[0], now)
    assert len(store.steps) == 1
    # A new leader that reads the schedule later finds nothing due.
    await second.run_once()
    assert len(store.steps) == 1


async def test_a_paused_schedule_does_not_fire_and_the_loop_sleeps_until_the_next_due(
    store: MemoryStore,
) -> None:
    await store.schedule_create(EVERY_10S, None)
    await store.schedule_create(
        ScheduleSpec(name="later", step_type="hello_world", interval_seconds=3600),
        datetime.now(UTC) + timedelta(seconds=0.5),
    )
    loop = ScheduleLoop(store, leader(), interval=5)
    await loop.run_once()
    assert store.steps == {}
    assert 0 < loop.next_wait() <= 0.51
