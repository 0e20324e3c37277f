"""The store: the only place with SQL. Callers get plain records and our own exceptions."""

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import asyncpg

from fleetq_server.store.connection import (
    COMMAND_TIMEOUT_S,
    DIRECT,
    PGBOUNCER,
    POOLERS,
    create_pool,
)
from fleetq_server.store.migrations import apply_migrations
from fleetq_server.store.notifications import SUBMIT_CHANNEL, PollingOnly, SubmitSubscription
from fleetq_server.store.pods import PodQueries
from fleetq_server.store.ports import Subscription
from fleetq_server.store.recovery import RecoveryQueries
from fleetq_server.store.retention import RetentionQueries
from fleetq_server.store.schedules import ScheduleQueries
from fleetq_server.store.step_leases import StepLeaseQueries
from fleetq_server.store.step_lifecycle import StepCancelSubscription, StepLifecycleQueries
from fleetq_server.store.step_listing import StepListingQueries
from fleetq_server.store.step_orphans import StepOrphanQueries
from fleetq_server.store.step_outcomes import StepOutcomeQueries
from fleetq_server.store.step_schedule import StepScheduleQueries
from fleetq_server.store.step_traces import StepTraceQueries
from fleetq_server.store.step_watch import StepChangeSubscription, StepWatchQueries
from fleetq_server.store.steps import StepQueries
from fleetq_server.store.throughput import ThroughputQueries
from fleetq_server.store.type_limits import TypeLimitQueries
from fleetq_server.store.vacuum import VacuumQueries

__all__ = ["DIRECT", "PGBOUNCER", "POOLERS", "SUBMIT_CHANNEL", "Store", "open_store"]


class Store(
    StepQueries,
    StepOutcomeQueries,
    StepListingQueries,
    StepLifecycleQueries,
    StepOrphanQueries,
    StepLeaseQueries,
    StepScheduleQueries,
    StepTraceQueries,
    StepWatchQueries,
    PodQueries,
    RecoveryQueries,
    RetentionQueries,
    VacuumQueries,
    ScheduleQueries,
    ThroughputQueries,
    TypeLimitQueries,
):
    """All of FLEET-Q's database access, grouped by entity in the base classes."""

    async def ping(self) -> None:
        """Round-trip to PostgreSQL (health checks)."""
        async with self._connection() as connection:
            await connection.fetchval("SELECT 1")

    @property
    def polls_only(self) -> bool:
        """True when there is no URL to LISTEN on: pods then find new steps by polling."""
        return self._listen_dsn is None

    def submit_subscription(
        self,
        step_types: Iterable[str],
        on_submit: Callable[[], None],
        on_counts: Callable[[Mapping[str, int] | None], None] | None = None,
    ) -> Subscription:
        """A LISTEN for submits of `step_types` (and releases and requeues of any type),
        on a connection of its own; it connects on its first `ensure()`. Without a URL
        to LISTEN on (behind a pooler), a subscription that never wakes anyone. `on_counts`
        hears every notification's new steps by type (None: any), for waiters of other
        types (ClaimSteps' long polls) sharing the connection."""
        if self._listen_dsn is None:
            return PollingOnly()
        return SubmitSubscription(self._listen_dsn, step_types, on_submit, on_counts)

    def step_change_subscription(
        self, on_change: Callable[[list[str] | None], None]
    ) -> Subscription:
        """A LISTEN for changes of watched steps (ids, or None for any), on a connection of
        its own; without a URL to LISTEN on, one that never calls (watchers then rely on
        their hub's periodic re-read)."""
        if self._listen_dsn is None:
            return PollingOnly()
        return StepChangeSubscription(self._listen_dsn, on_change)

    def step_cancel_subscription(self, on_cancel: Callable[[str], None]) -> Subscription:
        """A LISTEN for cancels requested of claimed steps, on a connection of its own;
        without a URL to LISTEN on, one that never calls (pods then find their cancels
        by polling `step_cancels_requested`)."""
        if self._listen_dsn is None:
            return PollingOnly()
        return StepCancelSubscription(self._listen_dsn, on_cancel)


async def open_store(
    dsn: str,
    pool_size: int = 10,
    command_timeout: float = COMMAND_TIMEOUT_S,
    *,
    pooler: str = DIRECT,
    listen_dsn: str | None = None,
    query_logger: Callable[[Any], None] | None = None,
    durable_claims: bool = False,
) -> Store:
    """Connect, apply pending migrations under the advisory lock, and return the store.

    `pooler` names what sits in front of PostgreSQL (`POOLERS`). LISTEN connects to
    `listen_dsn`; when it is None, to `dsn` itself if that is PostgreSQL directly, and
    nowhere behind a pooler (which cannot keep a LISTEN): pods then only poll.
    `query_logger` sees every query of the pool (tracing's database spans).
    With `durable_claims` a pod's claims wait for their WAL flush like every other write
    (FLEETQ_DURABLE_CLAIMS); by default they do not (`claims.claim_statement`).
    """
    if listen_dsn is None and pooler == DIRECT:
        listen_dsn = dsn
    pool: asyncpg.Pool = await create_pool(dsn, pool_size, command_timeout, pooler, query_logger)
    store = Store(
        pool,
        dsn,
        listen_dsn,
        pooler,
        durable_claims=durable_claims,
        command_timeout=command_timeout,
        query_logger=query_logger,
    )
    try:
        await apply_migrations(dsn, pooler)
    except BaseException:
        await pool.close()
        raise
    return store
