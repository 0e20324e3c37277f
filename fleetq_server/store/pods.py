"""SQL for pods: registration, heartbeats, the leader election and queue statistics.

Liveness is always judged by the database clock: a pod is live when its row is 'up' and
its last heartbeat is younger than the dead-pod threshold.
"""

from collections import Counter

import asyncpg

from fleetq_server.store.connection import PoolHolder
from fleetq_server.store.records import HeartbeatOutcome, LeaderView, PodRecord, QueueStats

_LIVE_PODS = """
    SELECT pod_id, birth_ts, last_heartbeat_ts, status, current_capacity, max_capacity
    FROM fleetq_pods
    WHERE status = 'up' AND last_heartbeat_ts > now() - make_interval(secs => $1)
    ORDER BY birth_ts, pod_id
"""


# Finished steps from their maintained counts (summing the stripes), live work from the
# pending and claimed partial indexes: one branch per index, as an IN list would scan the table.
_COUNTS_BY_STATUS_AND_TYPE = """
    SELECT status, type, sum(n)::bigint AS n FROM fleetq_finished_step_counts
    GROUP BY status, type HAVING sum(n) <> 0
    UNION ALL
    SELECT 'pending', type, count(*) FROM fleetq_steps WHERE status = 'pending' GROUP BY type
    UNION ALL
    SELECT 'claimed', type, count(*) FROM fleetq_steps WHERE status = 'claimed' GROUP BY type
"""


def _pod_record(row: asyncpg.Record) -> PodRecord:
    return PodRecord(**dict(row))


class PodQueries(PoolHolder):
    """Every statement that touches `fleetq_pods`."""

    async def pod_register(self, pod_id: str, max_capacity: int) -> PodRecord:
        """Register this pod as up, born now (database clock)."""
        async with self._connection() as connection:
            row = await connection.fetchrow(
                """
                INSERT INTO fleetq_pods (pod_id, max_capacity) VALUES ($1, $2)
                ON CONFLICT (pod_id) DO UPDATE
                SET birth_ts = now(), last_heartbeat_ts = now(), status = 'up',
                    current_capacity = 0, max_capacity = EXCLUDED.max_capacity
                RETURNING pod_id, birth_ts, last_heartbeat_ts, status, current_capacity,
                          max_capacity
                """,
                pod_id,
                max_capacity,
            )
        return _pod_record(row)

    async def pod_heartbeat(
        self, pod_id: str, current_capacity: int, max_capacity: int, dead_threshold_s: float
    ) -> HeartbeatOutcome:
        """Refresh this pod's heartbeat and capacity; report whether it is still up.

        The row lock taken by the UPDATE orders it against a concurrent recovery that
        marks this pod down: whichever commits second sees the other's result.
        """
        async with self._heartbeat_connection() as connection:
            row = await connection.fetchrow(
                f"""
                WITH beat AS (
                    UPDATE fleetq_pods
                    SET last_heartbeat_ts = now(), current_capacity = $2, max_capacity = $3
                    WHERE pod_id = $4 AND status = 'up'
                    RETURNING pod_id
                )
                SELECT EXISTS (SELECT 1 FROM beat) AS alive,
                       (SELECT pod_id FROM ({_LIVE_PODS}) AS live LIMIT 1) AS leader
                """,
                dead_threshold_s,
                current_capacity,
                max_capacity,
                pod_id,
            )
        return HeartbeatOutcome(alive=row["alive"], leader_pod_id=row["leader"])

    async def pod_mark_down(self, pod_id: str) -> None:
        """Mark this pod down (clean shutdown): the next eldest leads at once."""
        async with self._connection() as connection:
            await connection.execute(
                "UPDATE fleetq_pods SET status = 'down', current_capacity = 0 WHERE pod_id = $1",
                pod_id,
            )

    async def pod_next_expiry(self, dead_threshold_s: float) -> float | None:
        """Seconds until the first pod marked up goes stale if it does not beat again: below
        zero when one already has and no recovery has marked it down yet (e.g. it expired
        while a cycle was running); None when no pod is up."""
        async with self._connection() as connection:
            seconds = await connection.fetchval(
                """
                SELECT EXTRACT(EPOCH FROM min(last_heartbeat_ts)
                                          + make_interval(secs => $1) - clock_timestamp())
                FROM fleetq_pods WHERE status = 'up'
                """,
                dead_threshold_s,
            )
        return None if seconds is None else float(seconds)

    async def leader_get(self, dead_threshold_s: float) -> LeaderView:
        """The live pods, eldest first, and the database time of the check."""
        async with self._connection() as connection, connection.transaction(readonly=True):
            checked_ts = await connection.fetchval("SELECT now()")
            rows = await connection.fetch(_LIVE_PODS, dead_threshold_s)
        return LeaderView(checked_ts=checked_ts, live_pods=[_pod_record(r) for r in rows])

    async def queue_stats(self, dead_threshold_s: float) -> QueueStats:
        """Step counts by status, pending by priority, steps by type, and live pods.

        Never scans finished steps, however many are kept: their counts come from the
        trigger-maintained fleetq_finished_step_counts (migration 0003), and pending and
        claimed steps are counted over their partial indexes. One REPEATABLE READ snapshot,
        so the numbers agree with each other.
        """
        async with (
            self._connection() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            by_status_and_type = await connection.fetch(_COUNTS_BY_STATUS_AND_TYPE)
            by_priority = await connection.fetch(
                "SELECT priority, count(*) AS n FROM fleetq_steps WHERE status = 'pending'"
                " GROUP BY priority"
            )
            live = await connection.fetch(_LIVE_PODS, dead_threshold_s)
        counts_by_status: Counter[str] = Counter()
        steps_by_type: Counter[str] = Counter()
        for row in by_status_and_type:
            counts_by_status[row["status"]] += row["n"]
            steps_by_type[row["type"]] += row["n"]
        return QueueStats(
            counts_by_status=dict(counts_by_status),
            pending_by_priority={r["priority"]: r["n"] for r in by_priority},
            steps_by_type=dict(steps_by_type),
            live_pods=[_pod_record(r) for r in live],
        )
