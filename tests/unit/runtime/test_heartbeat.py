"""HeartbeatLoop and HealthMonitor on the in-memory store: the leader, a lost database,
and a pod the fleet presumed dead."""

import pytest

from fleetq_server import errors
from fleetq_server.runtime.health import HealthMonitor
from fleetq_server.runtime.heartbeat import HeartbeatLoop
from fleetq_server.runtime.state import PodState
from tests.support.memory_store import MemoryStore


class Calls:
    """Records which callbacks the loop made."""

    def __init__(self) -> None:
        self.made: list[str] = []

    async def presumed_dead(self) -> None:
        self.made.append("presumed_dead")

    def health(self) -> None:
        self.made.append("health")

    def leadership(self) -> None:
        self.made.append("leadership")


def heartbeat(store: MemoryStore, state: PodState, calls: Calls) -> HeartbeatLoop:
    return HeartbeatLoop(
        store, state, 1.0, 15.0, calls.presumed_dead, calls.health, calls.leadership
    )


async def test_the_eldest_live_pod_learns_it_leads(store: MemoryStore, state: PodState) -> None:
    await store.pod_register("pod-b", 4)
    calls = Calls()
    await heartbeat(store, state, calls).run_once()
    assert state.is_leader and calls.made == ["leadership"]
    younger = PodState(base_pod_id="pod-b", max_capacity=4, database_ok=True)
    await heartbeat(store, younger, Calls()).run_once()
    assert not younger.is_leader


async def test_a_lost_database_drops_health_and_leadership(
    store: MemoryStore, state: PodState
) -> None:
    state.is_leader = True
    calls = Calls()
    store.available = False
    with pytest.raises(errors.DatabaseUnavailableError):
        await heartbeat(store, state, calls).run_once()
    assert (state.database_ok, state.is_leader, calls.made) == (False, False, ["health"])


async def test_a_pod_marked_down_by_the_fleet_is_told_it_is_presumed_dead(
    store: MemoryStore, state: PodState
) -> None:
    await store.pod_mark_down("pod-a")
    calls = Calls()
    await heartbeat(store, state, calls).run_once()
    assert calls.made == ["presumed_dead"] and not state.is_leader


async def test_the_health_monitor_follows_the_database(store: MemoryStore, state: PodState) -> None:
    calls = Calls()
    monitor = HealthMonitor(store, state, 1.0, on_change=calls.health)
    store.available = False
    await monitor.run_once()
    assert not state.healthy
    store.available = True
    await monitor.run_once()
    assert state.healthy
