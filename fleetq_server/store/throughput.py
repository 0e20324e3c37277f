"""SQL for the throughput series: steps completed and failed per minute, read from the ring
of per-minute counters that migration 0013's trigger keeps as steps finish."""

from fleetq_server.store.connection import PoolHolder
from fleetq_server.store.records import ThroughputMinute

# The ring's length (migration 0013): the most minutes a series can cover.
RING_MINUTES = 120


class ThroughputQueries(PoolHolder):
    """GetThroughput's series."""

    async def throughput_list(self, minutes: int) -> list[ThroughputMinute]:
        """The last `minutes` minutes (1 to RING_MINUTES, the current one last), oldest
        first, each with its counts summed over the stripes; zeros for a minute without
        finished steps. A slot still holding an older minute lies outside the window."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                """
                SELECT m.minute_ts, coalesce(sum(t.completed), 0)::bigint AS completed,
                       coalesce(sum(t.failed), 0)::bigint AS failed
                FROM generate_series(date_trunc('minute', now()) - make_interval(mins => $1 - 1),
                                     date_trunc('minute', now()), interval '1 minute')
                     AS m(minute_ts)
                LEFT JOIN fleetq_throughput AS t ON t.minute_ts = m.minute_ts
                GROUP BY m.minute_ts
                ORDER BY m.minute_ts
                """,
                minutes,
            )
        return [ThroughputMinute(r["minute_ts"], r["completed"], r["failed"]) for r in rows]
