"""The in-memory twin of store/schedules.py, mixed into MemoryStore (tests/contract checks
that both keep one contract)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fleetq_server import errors
from fleetq_server.store.records import ScheduleRecord, ScheduleSpec


@dataclass
class _Schedule:
    spec: ScheduleSpec
    source: str
    next_fire_ts: datetime | None
    created_ts: datetime
    updated_ts: datetime
    last_fire_ts: datetime | None = None
    last_step_id: str | None = None


class MemorySchedules:
    """Schedules in a dict; `transaction()` and `steps` come from MemoryStore."""

    steps: dict[str, Any]
    schedules: dict[str, _Schedule]

    def transaction(self) -> AbstractContextManager[datetime]:
        raise NotImplementedError  # MemoryStore's

    def _schedule_record(self, row: _Schedule) -> ScheduleRecord:
        step = self.steps.get(row.last_step_id) if row.last_step_id else None
        return ScheduleRecord(
            spec=copy.deepcopy(row.spec),
            source=row.source,
            next_fire_ts=row.next_fire_ts,
            last_fire_ts=row.last_fire_ts,
            last_step_id=row.last_step_id,
            last_step_status=step.status if step is not None else None,
            created_ts=row.created_ts,
            updated_ts=row.updated_ts,
        )

    def _schedule(self, name: str) -> _Schedule:
        row = self.schedules.get(name)
        if row is None:
            raise errors.NotFoundError(f"schedule {name!r} not found")
        return row

    async def schedule_create(
        self, spec: ScheduleSpec, next_fire_ts: datetime | None, *, source: str = "api"
    ) -> ScheduleRecord:
        with self.transaction() as now:
            if spec.name in self.schedules:
                raise errors.ConflictError(f"schedule {spec.name!r} already exists")
            row = _Schedule(copy.deepcopy(spec), source, next_fire_ts, now, now)
            self.schedules[spec.name] = row
            return self._schedule_record(row)

    async def schedule_replace(
        self, spec: ScheduleSpec, next_fire_ts: datetime | None
    ) -> ScheduleRecord:
        with self.transaction() as now:
            row = self._schedule(spec.name)
            row.spec, row.next_fire_ts, row.updated_ts = copy.deepcopy(spec), next_fire_ts, now
            return self._schedule_record(row)

    async def schedule_get(self, name: str) -> ScheduleRecord:
        with self.transaction():
            return self._schedule_record(self._schedule(name))

    async def schedule_list(self) -> list[ScheduleRecord]:
        with self.transaction():
            return [self._schedule_record(self.schedules[n]) for n in sorted(self.schedules)]

    async def schedule_delete(self, name: str) -> None:
        with self.transaction():
            self._schedule(name)
            del self.schedules[name]

    def _due(self, now: datetime) -> list[_Schedule]:
        return sorted(
            (
                row
                for row in self.schedules.values()
                if not row.spec.paused and row.next_fire_ts is not None
            ),
            key=lambda row: row.next_fire_ts or now,
        )

    async def schedule_list_due(self, limit: int) -> tuple[datetime, list[ScheduleRecord]]:
        with self.transaction() as now:
            due = [row for row in self._due(now) if row.next_fire_ts and row.next_fire_ts <= now]
            return now, [self._schedule_record(row) for row in due[:limit]]

    async def schedule_next_due(self) -> float | None:
        with self.transaction() as now:
            due = self._due(now)
            if not due or due[0].next_fire_ts is None:
                return None
            return (due[0].next_fire_ts - now).total_seconds()

    async def schedule_advance(
        self,
        name: str,
        expected_next: datetime,
        next_fire_ts: datetime,
        fired: tuple[datetime, str] | None,
    ) -> bool:
        with self.transaction():
            row = self.schedules.get(name)
            if row is None or row.spec.paused or row.next_fire_ts != expected_next:
                return False
            row.next_fire_ts = next_fire_ts
            if fired is not None:
                row.last_fire_ts, row.last_step_id = fired
            return True

    async def schedule_reconcile(
        self, declared: Sequence[tuple[ScheduleSpec, datetime | None]]
    ) -> list[str]:
        with self.transaction() as now:
            for spec, next_fire_ts in declared:
                row = self.schedules.get(spec.name)
                if row is None:
                    self.schedules[spec.name] = _Schedule(
                        copy.deepcopy(spec), "file", next_fire_ts, now, now
                    )
                    continue
                old = row.spec
                if (old.cron, old.interval_seconds, old.timezone, old.paused) != (
                    spec.cron,
                    spec.interval_seconds,
                    spec.timezone,
                    spec.paused,
                ):
                    row.next_fire_ts = next_fire_ts
                row.spec, row.source, row.updated_ts = copy.deepcopy(spec), "file", now
            names = {spec.name for spec, _ in declared}
            gone = sorted(
                name
                for name, row in self.schedules.items()
                if row.source == "file" and name not in names
            )
            for name in gone:
                del self.schedules[name]
            return gone
