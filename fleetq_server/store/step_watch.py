"""SQL for watched steps (WatchStep): who watches what, batched reads, and the LISTEN.

A pod records each step it has watchers for in fleetq_step_watches; a trigger on
fleetq_steps (migration 0006) then NOTIFYs STEP_CHANGED_CHANNEL with the ids of the
watched steps every UPDATE changed. Unwatched steps cost writers one probe of that table.
"""

import logging
from collections.abc import Callable, Sequence

from fleetq_server.store.connection import PoolHolder
from fleetq_server.store.notifications import ListenConnection
from fleetq_server.store.records import StepRecord
from fleetq_server.store.step_attempts import STEP_COLUMNS, step_record

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


class StepChangeSubscription(ListenConnection):
    """LISTENs on STEP_CHANGED_CHANNEL and calls `on_change(ids)`, ids None meaning "any
    watched step"."""

    channel = STEP_CHANGED_CHANNEL

    def __init__(self, dsn: str, on_change: Callable[[list[str] | None], None]) -> None:
        super().__init__(dsn)
        self._on_change = on_change

    def on_payload(self, payload: str) -> None:
        self._on_change(payload.split(",") if payload else None)
