"""SQL for scheduled steps: when the next one of a pod's types falls due."""

from fleetq_server.store.connection import PoolHolder


class StepScheduleQueries(PoolHolder):
    """The claimer's next due time, so it sleeps until then rather than a poll interval."""

    async def step_next_due(self, step_types: list[str], since_s: float = 0.0) -> float | None:
        """Seconds (database clock) until the earliest pending step of `step_types` that was
        not claimable `since_s` seconds ago becomes, or became, so (scheduled, or in retry
        backoff); None when there is none. One descent of fleetq_steps_due_idx per type.

        `since_s` covers the caller's claim that found nothing: its statement saw the
        database clock as it was then, and a step falling due between that claim and this
        look is no longer in the future now. Without it, it would be in neither answer and
        wait for the poll; with it, the answer is negative (due already) and the caller
        claims again at once.
        """
        async with self._connection() as connection:
            seconds: float | None = await connection.fetchval(
                """
                SELECT extract(epoch FROM min(due.ts) - now())::float8
                FROM unnest($1::text[]) AS wanted(type)
                CROSS JOIN LATERAL (
                    SELECT not_before_ts AS ts FROM fleetq_steps
                    WHERE status = 'pending' AND type = wanted.type
                      AND not_before_ts > now() - make_interval(secs => $2)
                      AND not_before_ts > created_ts  -- the index's predicate (0012)
                    ORDER BY not_before_ts LIMIT 1
                ) AS due
                """,
                step_types,
                since_s,
            )
        return seconds
