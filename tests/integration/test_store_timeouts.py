"""A statement that cannot finish (a hung or locked database) fails after the command
timeout with DatabaseUnavailableError, and PostgreSQL stops running it."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from fleetq_server import errors
from fleetq_server.store import open_store


async def lock_waiters(connection: asyncpg.Connection) -> int:
    await connection.execute("SELECT pg_stat_clear_snapshot()")  # fresh inside a transaction
    count: int = await connection.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return count


async def lock_waiters_after_settling(connection: asyncpg.Connection) -> int:
    """Lock waiters, polled for up to 10 s until there are none (cancelling takes a moment)."""
    for _ in range(200):
        waiting = await lock_waiters(connection)
        if not waiting:
            break
        await asyncio.sleep(0.05)
    return waiting


async def test_a_statement_stuck_past_the_command_timeout_is_cancelled(database_url: str) -> None:
    store = await open_store(database_url, pool_size=2, command_timeout=0.5)
    blocker = await asyncpg.connect(database_url)
    try:
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE fleetq_steps IN ACCESS EXCLUSIVE MODE")

            with pytest.raises(errors.DatabaseUnavailableError):
                await store.step_get("step_x")

            # Cancelled server-side: nothing waits any more, though the lock is still held.
            assert await lock_waiters_after_settling(blocker) == 0
        with pytest.raises(errors.NotFoundError):  # lock released: the same read now works
            await store.step_get("step_x")
    finally:
        await blocker.close()
        await store.close()
