"""SQL for pods: registration, heartbeats, the leader election and queue statistics.

Liveness is always judged by the database clock, by each pod's own lease (store.liveness).
"""

import asyncpg

from fleetq_server.store.connection import PoolHolder
from fleetq_server.store.liveness import pod_is_live, pod_lease_end
from fleetq_server.store.records import HeartbeatOutcome, LeaderView, PodRecord, QueueStats

_LIVE_PODS = f"""
    SELECT pod_id, birth_ts, last_heartbeat_ts, status, current_capacity, max_capacity
    FROM fleetq_pods AS p
    WHERE {pod_is_live("p")}
    ORDER BY birth_ts, pod_id
"""

# Queue statistics name at most this many step types, the most numerous; the steps of all
# the others are summed under OTHER_TYPES, so the response stays small at any number of
# types (a backlog of types no pod runs once made it 4 MB, over gRPC's receive limit).
QUEUE_STATS_TOP_TYPES = 50
# Parentheses are not allowed in step types, so this key never collides with one.
OTHER_TYPES = "(other)"

# Finished steps from their maintained counts (summing the stripes), live work from the
# pending and claimed partial indexes: one branch per index, as an IN list would scan the table.
# Pending steps are read once, grouped by type and priority, and both breakdowns are summed
# from that: a second walk over them for the priorities doubled the cost of the statistics
# (the dashboard's overview waits on them). Then the totals by status, the top $1 types and
# the rest, and pending by priority: a few dozen rows whatever the number of types, all from
# one snapshot.
_QUEUE_COUNTS = """
    WITH pending AS MATERIALIZED (
        SELECT type, priority, count(*) AS n FROM fleetq_steps WHERE status = 'pending'
        GROUP BY type, priority
    ), counts AS MATERIALIZED (
        SELECT status, type, sum(n)::bigint AS n FROM fleetq_finished_step_counts
        GROUP BY status, type HAVING sum(n) <> 0
        UNION ALL
        SELECT 'pending', type, sum(n)::bigint FROM pending GROUP BY type
        UNION ALL
        SELECT 'claimed', type, count(*) FROM fleetq_steps WHERE status = 'claimed' GROUP BY type
    ), by_type AS (
        SELECT type, sum(n)::bigint AS n,
               row_number() OVER (ORDER BY sum(n) DESC, type) AS rank
        FROM counts GROUP BY type
    )
    SELECT 'status' AS kind, status AS key, sum(n)::bigint AS n FROM counts GROUP BY status
    UNION ALL
    SELECT 'type', type, n FROM by_type WHERE rank <= $1
    UNION ALL
    SELECT 'type', $2, sum(n)::bigint FROM by_type WHERE rank > $1 HAVING count(*) > 0
    UNION ALL
    SELECT 'priority', priority::text, sum(n)::bigint FROM pending GROUP BY priority
"""


def _pod_record(row: asyncpg.Record) -> PodRecord:
    return PodRecord(**dict(row))


class PodQueries(PoolHolder):
    """Every statement that touches `fleetq_pods`."""

    async def pod_register(
        self, pod_id: str, max_capacity: int, lease_s: float | None = None
    ) -> PodRecord:
        """Register this pod as up, born now (database clock), live for `lease_s` seconds
        unless it beats again (its dead-pod threshold). Without `lease_s` the row declares
        no lease and readers judge it by their own threshold, as rows of older versions."""
        async with self._connection() as connection:
            row = await connection.fetchrow(
                """
                INSERT INTO fleetq_pods (pod_id, max_capacity, expires_at)
                VALUES ($1, $2, now() + make_interval(secs => $3))
                ON CONFLICT (pod_id) DO UPDATE
                SET birth_ts = now(), last_heartbeat_ts = now(), status = 'up',
                    current_capacity = 0, max_capacity = EXCLUDED.max_capacity,
                    expires_at = EXCLUDED.expires_at
                RETURNING pod_id, birth_ts, last_heartbeat_ts, status, current_capacity,
                          max_capacity
                """,
                pod_id,
                max_capacity,
                lease_s,
            )
        return _pod_record(row)

    async def pod_heartbeat(
        self, pod_id: str, current_capacity: int, max_capacity: int, dead_threshold_s: float
    ) -> HeartbeatOutcome:
        """Refresh this pod's heartbeat and capacity, and extend its lease to
        `dead_threshold_s` (its own threshold) from now; report whether it is still up.

        The row lock taken by the UPDATE orders it against a concurrent recovery that
        marks this pod down: whichever commits second sees the other's result.
        """
        async with self._heartbeat_connection() as connection:
            row = await connection.fetchrow(
                f"""
                WITH beat AS (
                    UPDATE fleetq_pods
                    SET last_heartbeat_ts = now(), current_capacity = $2, max_capacity = $3,
                        expires_at = now() + make_interval(secs => $1)
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
        """Seconds until the first pod marked up goes stale if it does not beat again (by
        its own lease): below zero when one already has and no recovery has marked it down
        yet (e.g. it expired while a cycle was running); None when no pod is up."""
        async with self._connection() as connection:
            seconds = await connection.fetchval(
                f"""
                SELECT EXTRACT(EPOCH FROM min({pod_lease_end("p")}) - clock_timestamp())
                FROM fleetq_pods AS p WHERE p.status = 'up'
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

    async def queue_stats(
        self, dead_threshold_s: float, top_types: int = QUEUE_STATS_TOP_TYPES
    ) -> QueueStats:
        """Step counts by status, pending by priority, steps by type, and live pods.

        Steps by type names the `top_types` most numerous types; the others' steps are
        summed under OTHER_TYPES. Never scans finished steps, however many are kept: their
        counts come from the trigger-maintained fleetq_finished_step_counts (migration
        0003), and pending and claimed steps are counted over their partial indexes. One
        REPEATABLE READ snapshot, so the numbers agree with each other.
        """
        async with (
            self._connection() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            counts = await connection.fetch(_QUEUE_COUNTS, top_types, OTHER_TYPES)
            live = await connection.fetch(_LIVE_PODS, dead_threshold_s)
        return QueueStats(
            counts_by_status={r["key"]: r["n"] for r in counts if r["kind"] == "status"},
            pending_by_priority={int(r["key"]): r["n"] for r in counts if r["kind"] == "priority"},
            steps_by_type={r["key"]: r["n"] for r in counts if r["kind"] == "type"},
            live_pods=[_pod_record(r) for r in live],
        )
