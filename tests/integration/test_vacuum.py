"""The leader's vacuum loop against a real PostgreSQL: it VACUUMs fleetq_steps once the
statistics count enough dead rows, only as leader, and a role that may not vacuum the table
is told once in the log instead of failing the loop."""

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

import pytest

from fleetq_server import metrics
from fleetq_server.runtime.state import PodState
from fleetq_server.runtime.vacuum import VacuumLoop
from fleetq_server.store import Store
from fleetq_server.store.connection import create_pool
from fleetq_server.store.vacuum import VacuumQueries
from fleetq_server.submission import prepare_step
from tests.integration.conftest import REQUEST

DEAD_ROWS = 20


async def vacuums(store: Store) -> int:
    """Manual VACUUMs of fleetq_steps so far (autovacuum's are counted apart)."""
    async with store._connection() as connection:
        count: int = await connection.fetchval(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'fleetq_steps'::regclass"
        )
    return count


async def make_dead_rows(store: Store, count: int) -> None:
    """`count` dead row versions in fleetq_steps, visible in the statistics."""
    await store.step_insert_many([prepare_step(replace(REQUEST)) for _ in range(count)])
    async with store._connection() as connection:
        # Test-only SQL: each update leaves the previous version dead.
        await connection.execute("UPDATE fleetq_steps SET last_update_ts = now()")
        await connection.execute("SELECT pg_stat_force_next_flush()")
    async with asyncio.timeout(30):
        while True:  # the statistics flush asynchronously: poll them
            if (await store.step_dead_rows())[0] >= count:
                return
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("is_leader", "threshold", "expected"),
    [(True, DEAD_ROWS, 1), (True, 10 * DEAD_ROWS, 0), (False, DEAD_ROWS, 0), (True, 0, 0)],
    ids=["leader-at-threshold", "below-threshold", "not-leader", "turned-off"],
)
async def test_the_leader_vacuums_once_dead_rows_reach_the_threshold(
    store: Store, is_leader: bool, threshold: int, expected: int
) -> None:
    await make_dead_rows(store, DEAD_ROWS)
    state = PodState(base_pod_id="pod-a", max_capacity=8, is_leader=is_leader)
    await VacuumLoop(store, state, interval=1.0, threshold=threshold).run_once()
    assert await vacuums(store) == expected
    dead, permitted = await store.step_dead_rows()
    assert permitted
    assert (dead < DEAD_ROWS) == (expected == 1)


def as_role(url: str, role: str) -> str:
    """`url` logging in as `role` instead (the test server trusts local logins)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


@pytest.fixture
async def stranger(store: Store, database_url: str) -> AsyncIterator[VacuumQueries]:
    """The vacuum queries of a role that may read and write fleetq_steps but does not own
    it (roles are server-wide: it is dropped afterwards)."""
    role = f"fleetq_stranger_{secrets.token_hex(4)}"
    async with store._connection() as connection:
        await connection.execute(f"CREATE ROLE {role} LOGIN")
        await connection.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON fleetq_steps TO {role}")
    url = as_role(database_url, role)
    try:
        pool = await create_pool(url, 2)
        try:
            yield VacuumQueries(pool, url, None)
        finally:
            await pool.close()
    finally:
        async with store._connection() as connection:
            await connection.execute(f"DROP OWNED BY {role}")
            await connection.execute(f"DROP ROLE {role}")


async def test_a_role_that_may_not_vacuum_is_told_once_and_nothing_is_vacuumed(
    store: Store, stranger: VacuumQueries, caplog: pytest.LogCaptureFixture
) -> None:
    await make_dead_rows(store, DEAD_ROWS)
    assert (await stranger.step_dead_rows())[1] is False
    loop = VacuumLoop(
        stranger, PodState(base_pod_id="pod-a", max_capacity=8, is_leader=True), 1.0, 1
    )
    with caplog.at_level(logging.WARNING, logger="fleetq_server.runtime.vacuum"):
        await loop.run_once()
        await loop.run_once()
    assert len([r for r in caplog.records if "may not VACUUM" in r.getMessage()]) == 1
    assert await vacuums(store) == 0


async def test_a_vacuum_that_finds_the_table_locked_is_skipped_and_not_counted(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await make_dead_rows(store, DEAD_ROWS)
    loop = VacuumLoop(
        store, PodState(base_pod_id="pod-a", max_capacity=8, is_leader=True), 1.0, DEAD_ROWS
    )
    counted = metrics.VACUUMS._value.get()
    async with store._connection() as holder, holder.transaction():
        # Test-only SQL: the lock a running VACUUM (autovacuum's) holds on the table.
        await holder.execute("LOCK TABLE fleetq_steps IN SHARE UPDATE EXCLUSIVE MODE")
        assert await store.step_vacuum() is False
        with caplog.at_level(logging.INFO, logger="fleetq_server.runtime.vacuum"):
            await loop.run_once()
    assert await vacuums(store) == 0
    assert metrics.VACUUMS._value.get() == counted
    messages = [r.getMessage() for r in caplog.records]
    assert any("skipped" in m for m in messages) and not any("vacuumed" in m for m in messages)
    await loop.run_once()  # the lock gone, the next look vacuums
    assert await vacuums(store) == 1
    assert metrics.VACUUMS._value.get() == counted + 1
