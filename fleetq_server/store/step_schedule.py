"""SQL for scheduled steps: when the next one of a pod's types falls due."""

from fleetq_server.store.connection import PoolHolder


class StepScheduleQueries(PoolHolder):
    """The claimer's next due time, so it sleeps until then rather than a poll interval."""

    async def step_next_due(self, step_types: list[str]) -> float | None:
        """Seconds (database clock) until the earliest pending step of `step_types` that is
        not yet claimable becomes so (scheduled, or in retry backoff); None when there is
        none. One descent of fleetq_steps_due_idx per type."""
        async with self._connection() as connection:
            seconds: float | None = await connection.fetchval(
                """
                SELECT extract(epoch FROM min(due.ts) - now())::float8
                FROM unnest($1::text[]) AS wanted(type)
                CROSS JOIN LATERAL (
                    SELECT not_before_ts AS ts FROM fleetq_steps
                    WHERE status = 'pending' AND type = wanted.type AND not_before_ts > now()
                      AND not_before_ts > created_ts  -- the index's predicate (0012)
                    ORDER BY not_before_ts LIMIT 1
                ) AS due
                """,
                step_types,
            )
        return seconds
