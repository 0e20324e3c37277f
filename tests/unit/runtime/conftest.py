"""The runtime's loops against the in-memory store: no database, milliseconds per test."""

import pytest

from fleetq_server.runtime.state import PodState
from tests.support.memory_store import MemoryStore


@pytest.fixture
async def store() -> MemoryStore:
    """An in-memory store with this test's pod, `pod-a`, registered up."""
    store = MemoryStore()
    await store.pod_register("pod-a", 4)
    return store


@pytest.fixture
def state() -> PodState:
    return PodState(base_pod_id="pod-a", max_capacity=4, database_ok=True)
