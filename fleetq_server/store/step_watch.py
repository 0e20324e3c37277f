"""SQL for watched steps (WatchStep): who watches what, batched reads, and the LISTEN.

A pod records each step it has watchers for in fleetq_step_watches; a trigger on
fleetq_steps (migration 0006) then NOTIFYs STEP_CHANGED_CHANNEL with the ids of the
watched steps every UPDATE changed. Unwatched steps cost writers one probe of that table.
"""

import logging
from collections.abc import Callable, Sequence

import asyncpg

from fleetq_server.store.connection import PoolHolder, translated_errors
from fleetq_server.store.records import StepRecord
from fleetq_server.store.steps import STEP_COLUMNS, step_record

log = logging.getLogger(__name__)

# The trigger's channel; the payload is comma-separated step ids (ids hold no commas), or
# empty for "any watched step" when the list would not fit a payload.
STEP_CHANGED_CHANNEL = "fleetq_step_changed"


class StepWatchQueries(PoolHolder):
    """Registration of watched steps and the batched reads that serve their watchers."""

    async def step_watch_add(self, step_id: str, pod_id: str) -> None:
        """Record that `pod_id` has watchers of `step_id` (idempotent)."""
        async with self._connection() as connection:
            await connection.execute(
                "INSERT INTO fleetq_step_watches (step_id, pod_id) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING",
                step_id,
                pod_id,
            )

    async def step_watch_remove(self, step_ids: Sequence[str], pod_id: str) -> None:
        """Forget `pod_id`'s watches of `step_ids`."""
        async with self._connection() as connection:
            await connection.execute(
                "DELETE FROM fleetq_step_watches WHERE pod_id = $1 AND step_id = ANY($2::text[])",
                pod_id,
                list(step_ids),
            )

    async def step_get_many(self, step_ids: Sequence[str]) -> list[StepRecord]:
        """The steps of `step_ids` that exist, in no particular order."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"SELECT {STEP_COLUMNS} FROM fleetq_steps WHERE step_id = ANY($1::text[])",
                list(step_ids),
            )
        return [step_record(row) for row in rows]


class StepChangeSubscription:
    """LISTENs on STEP_CHANGED_CHANNEL on a connection of its own and calls
    `on_change(ids)`, ids None meaning "any watched step"; reconnect with `ensure()`."""

    def __init__(self, dsn: str, on_change: Callable[[list[str] | None], None]) -> None:
        self._dsn = dsn
        self._on_change = on_change
        self._connection: asyncpg.Connection | None = None

    @property
    def connected(self) -> bool:
        """Whether the LISTEN connection is open."""
        return self._connection is not None and not self._connection.is_closed()

    async def ensure(self) -> bool:
        """Open the LISTEN connection if it is not open; True when it was (re)opened."""
        if self.connected:
            return False
        await self.close()
        with translated_errors():
            connection = await asyncpg.connect(self._dsn, timeout=5)
            await connection.add_listener(STEP_CHANGED_CHANNEL, self._notified)
        self._connection = connection
        return True

    async def close(self) -> None:
        """Close the LISTEN connection."""
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            try:
                await connection.close(timeout=2)
            except Exception:  # closing a broken connection: nothing left to save
                connection.terminate()

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: object) -> None:
        self._on_change(str(payload).split(",") if payload else None)
