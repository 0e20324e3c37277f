"""The store: the only place with SQL. Callers get plain records and our own exceptions."""

from collections.abc import Callable, Iterable

import asyncpg

from fleetq_server.store.connection import COMMAND_TIMEOUT_S, create_pool
from fleetq_server.store.migrations import apply_migrations
from fleetq_server.store.notifications import SubmitSubscription
from fleetq_server.store.pods import PodQueries
from fleetq_server.store.recovery import RecoveryQueries
from fleetq_server.store.retention import RetentionQueries
from fleetq_server.store.steps import SUBMIT_CHANNEL, StepQueries

__all__ = ["SUBMIT_CHANNEL", "Store", "open_store"]


class Store(StepQueries, PodQueries, RecoveryQueries, RetentionQueries):
    """All of FLEET-Q's database access, grouped by entity in the base classes."""

    async def ping(self) -> None:
        """Round-trip to PostgreSQL (health checks)."""
        async with self._connection() as connection:
            await connection.fetchval("SELECT 1")

    def submit_subscription(
        self, step_types: Iterable[str], on_submit: Callable[[], None]
    ) -> SubmitSubscription:
        """A LISTEN for submits of `step_types` (and releases and requeues of any type),
        on a connection of its own; it connects on its first `ensure()`."""
        return SubmitSubscription(self._dsn, step_types, on_submit)


async def open_store(
    dsn: str, pool_size: int = 10, command_timeout: float = COMMAND_TIMEOUT_S
) -> Store:
    """Connect, apply pending migrations under the advisory lock, and return the store."""
    pool: asyncpg.Pool = await create_pool(dsn, pool_size, command_timeout)
    store = Store(pool, dsn)
    try:
        await apply_migrations(dsn)
    except BaseException:
        await pool.close()
        raise
    return store
