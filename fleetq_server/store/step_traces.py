"""SQL for tracing: the traceparent a step's submit stored, read when an attempt starts."""

from fleetq_server.store.connection import PoolHolder


class StepTraceQueries(PoolHolder):
    """Read only while OpenTelemetry is on: the claim itself never carries it."""

    async def step_traceparent(self, step_id: str) -> str | None:
        """The W3C traceparent stored with the step at submit; None if none was (tracing
        off at submit) or the step is gone."""
        async with self._connection() as connection:
            traceparent: str | None = await connection.fetchval(
                "SELECT traceparent FROM fleetq_steps WHERE step_id = $1", step_id
            )
        return traceparent
