"""The schedule admin calls, written once like calls.py: the RPC, its request, the reader."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

from fleetq.v1 import fleetq_pb2 as pb
from google.protobuf.message import Message

from fleetq_client.calls import Call
from fleetq_common.json_values import dict_to_struct, struct_to_dict


@dataclass(frozen=True, slots=True)
class Schedule:
    """A periodic schedule, with its next and latest fire."""

    name: str
    cron: str | None
    interval_seconds: int | None
    timezone: str
    type: str
    args: dict[str, Any]
    metadata: dict[str, Any]
    priority: int
    max_retries: int
    overlap: str
    catch_up: str
    paused: bool
    source: str
    next_fire_time: datetime | None
    last_fire_time: datetime | None
    last_step_id: str | None
    last_step_status: str | None


class ScheduleFields(TypedDict, total=False):
    """A schedule's settable fields: `cron` (5 or 6 fields) or `interval_seconds`, and the
    template of each tick's step."""

    cron: str
    interval_seconds: int
    timezone: str
    type: str
    args: Mapping[str, Any]
    metadata: Mapping[str, Any]
    priority: int
    max_retries: int
    overlap: str
    catch_up: str
    paused: bool


def _time(message: Message, field: str) -> datetime | None:
    return getattr(message, field).ToDatetime(tzinfo=UTC) if message.HasField(field) else None


def _optional(message: Message, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


def _schedule(message: pb.Schedule) -> Schedule:
    return Schedule(
        name=message.name,
        cron=_optional(message, "cron"),
        interval_seconds=_optional(message, "interval_seconds"),
        timezone=message.timezone,
        type=message.type,
        args=struct_to_dict(message.args),
        metadata=struct_to_dict(message.metadata),
        priority=message.priority,
        max_retries=message.max_retries,
        overlap=message.overlap,
        catch_up=message.catch_up,
        paused=message.paused,
        source=message.source,
        next_fire_time=_time(message, "next_fire_time"),
        last_fire_time=_time(message, "last_fire_time"),
        last_step_id=_optional(message, "last_step_id"),
        last_step_status=_optional(message, "last_step_status"),
    )


def _fill(request: Message, fields: ScheduleFields) -> Message:
    for key, value in fields.items():
        if key in ("args", "metadata"):
            getattr(request, key).CopyFrom(dict_to_struct(value))  # type: ignore[arg-type]
        else:
            setattr(request, key, value)
    return request


def _read_schedule(response: Any) -> Schedule:
    return _schedule(response.schedule)


def create(name: str, **fields: Unpack[ScheduleFields]) -> Call[Schedule]:
    """Create a schedule; Conflict when the name is taken."""
    request = _fill(pb.CreateScheduleRequest(name=name), fields)
    return Call("CreateSchedule", request, _read_schedule)


def update(name: str, **fields: Unpack[ScheduleFields]) -> Call[Schedule]:
    """Change the fields given; the others keep their values."""
    request = _fill(pb.UpdateScheduleRequest(name=name), fields)
    return Call("UpdateSchedule", request, _read_schedule)


def get(name: str) -> Call[Schedule]:
    """One schedule; NotFound when there is none."""
    return Call("GetSchedule", pb.GetScheduleRequest(name=name), _read_schedule)


def listing() -> Call[list[Schedule]]:
    """Every schedule, by name."""
    return Call(
        "ListSchedules",
        pb.ListSchedulesRequest(),
        lambda response: [_schedule(s) for s in response.schedules],
    )


def delete(name: str) -> Call[None]:
    """Delete a schedule; NotFound when there is none."""
    return Call("DeleteSchedule", pb.DeleteScheduleRequest(name=name), lambda _: None)


def pause(name: str) -> Call[Schedule]:
    """Stop a schedule firing."""
    return Call("PauseSchedule", pb.PauseScheduleRequest(name=name), _read_schedule)


def resume(name: str) -> Call[Schedule]:
    """Let a paused schedule fire again from its next tick."""
    return Call("ResumeSchedule", pb.ResumeScheduleRequest(name=name), _read_schedule)
