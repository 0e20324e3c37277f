"""The schedule admin RPCs: protobuf in, a validated ScheduleSpec to the store, protobuf out.

The servicer mixes `ScheduleRpcs` in; the rules of a valid schedule live in
`fleetq_server.scheduling`, the SQL in `store/schedules.py`.
"""

import dataclasses
from datetime import UTC, datetime
from typing import Any

from fleetq.v1 import fleetq_pb2 as pb
from google.protobuf.message import Message

from fleetq_common.json_values import ValueBudget, dict_to_struct
from fleetq_server import errors, scheduling
from fleetq_server.api.json_fields import json_object
from fleetq_server.api.messages import timestamp
from fleetq_server.config import Settings
from fleetq_server.gateway import HTTP_CODE_KEY
from fleetq_server.store.ports import ScheduleAdminPort
from fleetq_server.store.records import ScheduleRecord, ScheduleSpec

# Request fields copied onto the spec when set, by spec field name (the rest: args, metadata).
_SCALARS = {
    "cron": "cron",
    "interval_seconds": "interval_seconds",
    "timezone": "timezone",
    "type": "step_type",
    "priority": "priority",
    "max_retries": "max_retries",
    "overlap": "overlap",
    "catch_up": "catch_up",
    "paused": "paused",
}


def schedule_message(record: ScheduleRecord) -> pb.Schedule:
    """A stored schedule as the API shows it."""
    spec = record.spec
    message = pb.Schedule(
        name=spec.name,
        cron=spec.cron,
        interval_seconds=spec.interval_seconds,
        timezone=spec.timezone,
        type=spec.step_type,
        args=dict_to_struct(spec.args),
        metadata=dict_to_struct(spec.metadata),
        priority=spec.priority,
        max_retries=spec.max_retries,
        overlap=spec.overlap,
        catch_up=spec.catch_up,
        paused=spec.paused,
        source=record.source,
        last_step_id=record.last_step_id,
        last_step_status=record.last_step_status,
        create_time=timestamp(record.created_ts),
        update_time=timestamp(record.updated_ts),
    )
    if record.next_fire_ts is not None:
        message.next_fire_time.CopyFrom(timestamp(record.next_fire_ts))
    if record.last_fire_ts is not None:
        message.last_fire_time.CopyFrom(timestamp(record.last_fire_ts))
    return message


def _changes(request: Message, max_json_values: int) -> dict[str, Any]:
    """The spec fields a request sets, by spec field name."""
    changes: dict[str, Any] = {}
    for field, target in _SCALARS.items():
        if request.DESCRIPTOR.fields_by_name[field].has_presence:
            if request.HasField(field):
                changes[target] = getattr(request, field)
        else:
            changes[target] = getattr(request, field)
    budget = ValueBudget(max_json_values)
    for field in ("args", "metadata"):
        value = json_object(request, field, budget)
        if value is not None:
            changes[field] = value
    if "cron" in changes and "interval_seconds" in changes:
        raise errors.ValidationError("cron: give either cron or interval_seconds, not both")
    return changes


def _name(raw: str) -> str:
    if not scheduling.NAME_PATTERN.fullmatch(raw):
        raise errors.ValidationError(
            "name: must be 1 to 100 letters, digits, '_', '-' or '.' characters"
        )
    return raw


def _next_fire(spec: ScheduleSpec) -> datetime | None:
    return None if spec.paused else scheduling.next_tick_after(spec, datetime.now(UTC))


class ScheduleRpcs:
    """CreateSchedule, ListSchedules, GetSchedule, UpdateSchedule, DeleteSchedule,
    PauseSchedule and ResumeSchedule, for the servicer to mix in."""

    _store: Any
    _settings: Settings

    @property
    def _schedules(self) -> ScheduleAdminPort:
        store: ScheduleAdminPort = self._store
        return store

    async def CreateSchedule(
        self, request: pb.CreateScheduleRequest, context: Any
    ) -> pb.CreateScheduleResponse:
        changes = _changes(request, self._settings.max_json_values)
        spec = ScheduleSpec(name=request.name, **changes)
        scheduling.validate_spec(spec)
        record = await self._schedules.schedule_create(spec, _next_fire(spec))
        context.set_trailing_metadata(((HTTP_CODE_KEY, "201"),))
        return pb.CreateScheduleResponse(schedule=schedule_message(record))

    async def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: Any
    ) -> pb.ListSchedulesResponse:
        records = await self._schedules.schedule_list()
        return pb.ListSchedulesResponse(schedules=[schedule_message(r) for r in records])

    async def GetSchedule(
        self, request: pb.GetScheduleRequest, context: Any
    ) -> pb.GetScheduleResponse:
        record = await self._schedules.schedule_get(_name(request.name))
        return pb.GetScheduleResponse(schedule=schedule_message(record))

    async def UpdateSchedule(
        self, request: pb.UpdateScheduleRequest, context: Any
    ) -> pb.UpdateScheduleResponse:
        return pb.UpdateScheduleResponse(
            schedule=schedule_message(await self._update(request, request.name))
        )

    async def DeleteSchedule(
        self, request: pb.DeleteScheduleRequest, context: Any
    ) -> pb.DeleteScheduleResponse:
        await self._schedules.schedule_delete(_name(request.name))
        return pb.DeleteScheduleResponse()

    async def PauseSchedule(
        self, request: pb.PauseScheduleRequest, context: Any
    ) -> pb.PauseScheduleResponse:
        record = await self._update(pb.UpdateScheduleRequest(paused=True), request.name)
        return pb.PauseScheduleResponse(schedule=schedule_message(record))

    async def ResumeSchedule(
        self, request: pb.ResumeScheduleRequest, context: Any
    ) -> pb.ResumeScheduleResponse:
        record = await self._update(pb.UpdateScheduleRequest(paused=False), request.name)
        return pb.ResumeScheduleResponse(schedule=schedule_message(record))

    async def _update(self, request: pb.UpdateScheduleRequest, name: str) -> ScheduleRecord:
        """Apply the fields `request` sets to the stored schedule. Its next tick is kept
        unless its timing or pause changed (a resumed schedule starts at its next tick)."""
        current = await self._schedules.schedule_get(_name(name))
        changes = _changes(request, self._settings.max_json_values)
        if "cron" in changes:
            changes["interval_seconds"] = None
        elif "interval_seconds" in changes:
            changes["cron"] = None
        spec = dataclasses.replace(current.spec, **changes)
        scheduling.validate_spec(spec)
        old = current.spec
        timing_same = (old.cron, old.interval_seconds, old.timezone, old.paused) == (
            spec.cron,
            spec.interval_seconds,
            spec.timezone,
            spec.paused,
        )
        next_fire = current.next_fire_ts if timing_same else _next_fire(spec)
        return await self._schedules.schedule_replace(spec, next_fire)
