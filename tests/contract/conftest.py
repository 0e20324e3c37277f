"""The store contract suite runs every test twice: on PostgreSQL and on the in-memory store
the unit tests use, so the fake cannot drift from the real thing (River's riverdrivertest
does the same for its drivers). What only a backend can do to itself (age a heartbeat,
hold the recovery lock) goes through `Backend`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Protocol

import pytest

from fleetq_server.store import Store
from fleetq_server.store.ports import StorePort
from fleetq_server.store.records import InsertOutcome
from fleetq_server.store.recovery import RECOVERY_LOCK_KEY
from fleetq_server.submission import SubmitRequest, prepare_step
from tests.support import backdating
from tests.support.databases import opened_store
from tests.support.memory_store import MemoryStore

# A plain step, and its insert with some fields changed (`dataclasses.replace`).
HELLO = SubmitRequest(
    type="hello_world",
    args={"n": 1},
    metadata=None,
    priority=0,
    max_retries=3,
    idempotency_key=None,
)


async def submit_hello(store: StorePort, **changes: object) -> str:
    """Insert HELLO with `changes`; the new step's id."""
    [outcome] = await store.step_insert_many([prepare_step(replace(HELLO, **changes))])  # type: ignore[arg-type]
    assert isinstance(outcome, InsertOutcome)
    return outcome.step_id


class Backend(Protocol):
    store: StorePort

    async def age_heartbeat(self, pod_id: str, seconds: float) -> None: ...
    async def age_step(self, step_id: str, seconds: float) -> None: ...
    async def age_recovery_records(self, count: int, seconds: float) -> None: ...
    async def age_worker(self, worker_id: str, seconds: float) -> None: ...
    async def pod_ids(self) -> list[str]: ...
    def recovery_lock_held(self) -> contextlib.AbstractAsyncContextManager[None]: ...


class PostgresBackend:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def age_heartbeat(self, pod_id: str, seconds: float) -> None:
        await backdating.age_heartbeat(self.store, pod_id, seconds)

    async def age_step(self, step_id: str, seconds: float) -> None:
        await backdating.age_step(self.store, step_id, seconds)

    async def age_recovery_records(self, count: int, seconds: float) -> None:
        await backdating.age_recovery_records(self.store, count, seconds)

    async def age_worker(self, worker_id: str, seconds: float) -> None:
        await backdating.age_worker(self.store, worker_id, seconds)

    async def pod_ids(self) -> list[str]:
        async with self.store._connection() as connection:
            rows = await connection.fetch("SELECT pod_id FROM fleetq_pods ORDER BY pod_id")
        return [row["pod_id"] for row in rows]

    @contextlib.asynccontextmanager
    async def recovery_lock_held(self) -> AsyncIterator[None]:
        """As another pod's cycle in progress holds it."""
        async with self.store._transaction() as connection:
            await connection.execute("SELECT pg_advisory_xact_lock($1)", RECOVERY_LOCK_KEY)
            yield


class MemoryBackend:
    def __init__(self) -> None:
        self.store = self.memory = MemoryStore()

    async def age_heartbeat(self, pod_id: str, seconds: float) -> None:
        self.memory.age_heartbeat(pod_id, seconds)

    async def age_step(self, step_id: str, seconds: float) -> None:
        self.memory.age_step(step_id, seconds)

    async def age_recovery_records(self, count: int, seconds: float) -> None:
        self.memory.age_recovery_records(count, seconds)

    async def age_worker(self, worker_id: str, seconds: float) -> None:
        self.memory.age_worker(worker_id, seconds)

    async def pod_ids(self) -> list[str]:
        return sorted(self.memory.pods)

    @contextlib.asynccontextmanager
    async def recovery_lock_held(self) -> AsyncIterator[None]:
        self.memory.recovery_locked = True
        try:
            yield
        finally:
            self.memory.recovery_locked = False


@pytest.fixture(params=["memory", "postgres"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Each backend in turn; PostgreSQL on a fresh database of the test's own."""
    if request.param == "memory":
        yield MemoryBackend()
        return
    async with opened_store(request.getfixturevalue("database_url")) as store:
        yield PostgresBackend(store)
