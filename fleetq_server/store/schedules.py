"""SQL for periodic schedules (migration 0008): their CRUD, the leader's due probe, and the
compare-and-set that moves a schedule past the tick it fired."""

from collections.abc import Sequence
from datetime import datetime

import asyncpg
import orjson

from fleetq_server import errors
from fleetq_server.store.connection import PoolHolder
from fleetq_server.store.records import ScheduleRecord, ScheduleSpec

_COLUMNS = """
    sc.name, sc.cron, sc.interval_seconds, sc.timezone, sc.step_type, sc.args, sc.metadata,
    sc.priority, sc.max_retries, sc.overlap, sc.catch_up, sc.paused, sc.source,
    sc.next_fire_ts, sc.last_fire_ts, sc.last_step_id, sc.created_ts, sc.updated_ts,
    (SELECT s.status FROM fleetq_steps AS s WHERE s.step_id = sc.last_step_id)
        AS last_step_status
"""
_SPEC_FIELDS = ScheduleSpec.__slots__


def schedule_record(row: asyncpg.Record) -> ScheduleRecord:
    """A row of _COLUMNS as a record."""
    spec = ScheduleSpec(**{name: row[name] for name in _SPEC_FIELDS})
    return ScheduleRecord(
        spec=spec,
        source=row["source"],
        next_fire_ts=row["next_fire_ts"],
        last_fire_ts=row["last_fire_ts"],
        last_step_id=row["last_step_id"],
        last_step_status=row["last_step_status"],
        created_ts=row["created_ts"],
        updated_ts=row["updated_ts"],
    )


def _spec_values(spec: ScheduleSpec) -> list[object]:
    """$1..$12 of the writes below, in _SPEC_FIELDS order (args and metadata as JSON text)."""
    values: list[object] = []
    for name in _SPEC_FIELDS:
        value = getattr(spec, name)
        values.append(orjson.dumps(value).decode() if name in ("args", "metadata") else value)
    return values


# The insert of a schedule: $1..$12 its spec (_spec_values), $13 its source, $14 next tick.
_WRITE = """
    INSERT INTO fleetq_schedules AS sc (name, step_type, cron, interval_seconds, timezone, args,
        metadata, priority, max_retries, overlap, catch_up, paused, source, next_fire_ts)
    VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7::text::jsonb, $8, $9, $10, $11, $12, $13,
        $14)
"""


class ScheduleQueries(PoolHolder):
    """Every statement on `fleetq_schedules`."""

    async def schedule_create(
        self, spec: ScheduleSpec, next_fire_ts: datetime | None, *, source: str = "api"
    ) -> ScheduleRecord:
        """Insert a schedule; ConflictError when its name is taken."""
        async with self._connection() as connection:
            row = await connection.fetchrow(
                f"""
                WITH sc AS ({_WRITE} ON CONFLICT (name) DO NOTHING RETURNING *)
                SELECT {_COLUMNS} FROM sc
                """,
                *_spec_values(spec),
                source,
                next_fire_ts,
            )
        if row is None:
            raise errors.ConflictError(f"schedule {spec.name!r} already exists")
        return schedule_record(row)

    async def schedule_replace(
        self, spec: ScheduleSpec, next_fire_ts: datetime | None
    ) -> ScheduleRecord:
        """Overwrite a schedule's spec and next tick, keeping its history and source;
        NotFoundError when there is none."""
        async with self._connection() as connection:
            row = await connection.fetchrow(
                f"""
                WITH sc AS (
                    UPDATE fleetq_schedules SET step_type = $2, cron = $3,
                        interval_seconds = $4, timezone = $5, args = $6::text::jsonb,
                        metadata = $7::text::jsonb, priority = $8, max_retries = $9,
                        overlap = $10, catch_up = $11, paused = $12, next_fire_ts = $13,
                        updated_ts = now()
                    WHERE name = $1 RETURNING *
                )
                SELECT {_COLUMNS} FROM sc
                """,
                *_spec_values(spec),
                next_fire_ts,
            )
        if row is None:
            raise errors.NotFoundError(f"schedule {spec.name!r} not found")
        return schedule_record(row)

    async def schedule_get(self, name: str) -> ScheduleRecord:
        """One schedule; NotFoundError when there is none."""
        async with self._connection() as connection:
            row = await connection.fetchrow(
                f"SELECT {_COLUMNS} FROM fleetq_schedules AS sc WHERE sc.name = $1", name
            )
        if row is None:
            raise errors.NotFoundError(f"schedule {name!r} not found")
        return schedule_record(row)

    async def schedule_list(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS} FROM fleetq_schedules AS sc ORDER BY sc.name"
            )
        return [schedule_record(row) for row in rows]

    async def schedule_delete(self, name: str) -> None:
        """Delete a schedule (its steps stay); NotFoundError when there is none."""
        async with self._connection() as connection:
            status = await connection.execute("DELETE FROM fleetq_schedules WHERE name = $1", name)
        if status.endswith(" 0"):
            raise errors.NotFoundError(f"schedule {name!r} not found")

    async def schedule_list_due(self, limit: int) -> tuple[datetime, list[ScheduleRecord]]:
        """The database's now, and up to `limit` unpaused schedules due by then, the most
        overdue first."""
        async with self._transaction() as connection:  # one now() for both reads
            now: datetime = await connection.fetchval("SELECT now()")
            rows = await connection.fetch(
                f"""
                SELECT {_COLUMNS} FROM fleetq_schedules AS sc
                WHERE NOT sc.paused AND sc.next_fire_ts <= now()
                ORDER BY sc.next_fire_ts LIMIT $1
                """,
                limit,
            )
        return now, [schedule_record(row) for row in rows]

    async def schedule_next_due(self) -> float | None:
        """Seconds (database clock) until the earliest unpaused schedule falls due; None
        when there is none."""
        async with self._connection() as connection:
            seconds: float | None = await connection.fetchval(
                "SELECT extract(epoch FROM min(next_fire_ts) - now())::float8"
                " FROM fleetq_schedules WHERE NOT paused"
            )
        return seconds

    async def schedule_advance(
        self,
        name: str,
        expected_next: datetime,
        next_fire_ts: datetime,
        fired: tuple[datetime, str] | None,
    ) -> bool:
        """Move a schedule from `expected_next` to `next_fire_ts`, recording `fired` (tick,
        step id) when a tick fired. A compare-and-set: False when another pod moved it
        first, or it was paused, changed or deleted meanwhile."""
        async with self._connection() as connection:
            status = await connection.execute(
                """
                UPDATE fleetq_schedules SET next_fire_ts = $3,
                    last_fire_ts = COALESCE($4, last_fire_ts),
                    last_step_id = COALESCE($5, last_step_id)
                WHERE name = $1 AND next_fire_ts = $2 AND NOT paused
                """,
                name,
                expected_next,
                next_fire_ts,
                fired[0] if fired else None,
                fired[1] if fired else None,
            )
        return not status.endswith(" 0")

    async def schedule_reconcile(
        self, declared: Sequence[tuple[ScheduleSpec, datetime | None]]
    ) -> list[str]:
        """Make the file's schedules (spec, next tick) what is stored, in one transaction:
        each is inserted or overwritten (keeping its history, and its next tick when its
        timing and pause did not change) and becomes a file schedule; file schedules not
        declared any more are deleted, and their names returned."""
        async with self._transaction() as connection:
            for spec, next_fire_ts in declared:
                await connection.execute(
                    f"""
                    {_WRITE}
                    ON CONFLICT (name) DO UPDATE SET step_type = EXCLUDED.step_type,
                        cron = EXCLUDED.cron, interval_seconds = EXCLUDED.interval_seconds,
                        timezone = EXCLUDED.timezone, args = EXCLUDED.args,
                        metadata = EXCLUDED.metadata, priority = EXCLUDED.priority,
                        max_retries = EXCLUDED.max_retries, overlap = EXCLUDED.overlap,
                        catch_up = EXCLUDED.catch_up, paused = EXCLUDED.paused, source = 'file',
                        next_fire_ts = CASE
                            WHEN (sc.cron, sc.interval_seconds, sc.timezone, sc.paused)
                                 IS NOT DISTINCT FROM (EXCLUDED.cron, EXCLUDED.interval_seconds,
                                                       EXCLUDED.timezone, EXCLUDED.paused)
                            THEN sc.next_fire_ts ELSE EXCLUDED.next_fire_ts END,
                        updated_ts = now()
                    """,
                    *_spec_values(spec),
                    "file",
                    next_fire_ts,
                )
            rows = await connection.fetch(
                "DELETE FROM fleetq_schedules WHERE source = 'file' AND NOT name = ANY($1::text[])"
                " RETURNING name",
                [spec.name for spec, _ in declared],
            )
        return sorted(row["name"] for row in rows)
