"""When a periodic schedule fires, and whether a spec is valid: pure functions, no I/O.

Cron expressions are parsed and stepped by cronsim (5 fields, or 6 with seconds first), a
maintained library, never by a parser of our own. Daylight saving follows Debian cron, as
cronsim does for 5-field expressions at fixed hours: a time the clock skips fires right
after the jump (02:30 on a spring-forward night fires at 03:00), a time it passes twice
fires once (the first). Interval schedules tick at whole multiples of `interval_seconds`
since the Unix epoch, so every pod computes the same tick times.
"""

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from fleetq_server import submission
from fleetq_server.errors import ValidationError
from fleetq_server.store.records import ScheduleRecord, ScheduleSpec

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
OVERLAP_CHOICES = ("allow", "skip")
CATCH_UP_CHOICES = ("skip", "once")
# A tick fired at most this late is on time; an older one was missed (the leader was down)
# and its schedule's catch_up decides.
MISSED_AFTER_S = 60.0
KEY_PREFIX = "schedule"


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(f"timezone: unknown IANA time zone {timezone!r}") from None


def _cron(spec: ScheduleSpec, after: datetime) -> datetime:
    """The first tick of `spec.cron` strictly after `after` (StopIteration: none)."""
    assert spec.cron is not None
    start = after.astimezone(_zone(spec.timezone))
    return next(CronSim(spec.cron, start)).astimezone(UTC)


def validate_spec(spec: ScheduleSpec) -> None:
    """Raise ValidationError naming the first invalid field; nothing else to check later."""
    if not NAME_PATTERN.fullmatch(spec.name):
        raise ValidationError("name: must be 1 to 100 letters, digits, '_', '-' or '.' characters")
    if (spec.cron is None) == (spec.interval_seconds is None):
        raise ValidationError("cron: give either cron or interval_seconds, not both")
    _zone(spec.timezone)
    if spec.interval_seconds is not None and spec.interval_seconds < 1:
        raise ValidationError("interval_seconds: must be at least 1")
    if spec.cron is not None:
        try:
            _cron(spec, datetime.now(UTC))
        except CronSimError as exc:
            raise ValidationError(f"cron: invalid expression {spec.cron!r}: {exc}") from None
        except StopIteration:
            raise ValidationError(f"cron: expression {spec.cron!r} never fires") from None
    if spec.overlap not in OVERLAP_CHOICES:
        raise ValidationError(f"overlap: must be one of {', '.join(OVERLAP_CHOICES)}")
    if spec.catch_up not in CATCH_UP_CHOICES:
        raise ValidationError(f"catch_up: must be one of {', '.join(CATCH_UP_CHOICES)}")
    submission.validate(_template(spec, key=tick_key(spec.name, datetime.now(UTC))))


def next_tick_after(spec: ScheduleSpec, moment: datetime) -> datetime:
    """The schedule's first tick strictly after `moment`, in UTC."""
    if spec.interval_seconds is not None:
        step = spec.interval_seconds
        return datetime.fromtimestamp((math.floor(moment.timestamp() / step) + 1) * step, UTC)
    return _cron(spec, moment)


def latest_tick_until(spec: ScheduleSpec, moment: datetime, since: datetime) -> datetime:
    """The latest tick at or before `moment`, starting from `since` (itself a tick at or
    before `moment`). Cron ticks are stepped forward from `since`, bounded: after a long
    outage the schedule jumps to the last hour before `moment` first."""
    if spec.interval_seconds is not None:
        step = spec.interval_seconds
        return datetime.fromtimestamp(math.floor(moment.timestamp() / step) * step, UTC)
    latest = since
    floor = moment - timedelta(hours=1)
    if latest < floor:
        try:
            candidate = _cron(spec, floor)
        except StopIteration:
            return latest
        if candidate > moment:
            return latest
        latest = candidate
    while True:
        try:
            candidate = _cron(spec, latest)
        except StopIteration:
            return latest
        if candidate > moment:
            return latest
        latest = candidate


def tick_key(name: str, tick: datetime) -> str:
    """The idempotency key of a tick's step: the same on every pod, for every attempt."""
    stamp = tick.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{KEY_PREFIX}:{name}:{stamp}"


def _template(
    spec: ScheduleSpec, key: str, pending_expiry_s: float = 0.0
) -> submission.SubmitRequest:
    return submission.SubmitRequest(
        type=spec.step_type,
        args=spec.args,
        metadata=spec.metadata,
        priority=spec.priority,
        max_retries=spec.max_retries,
        idempotency_key=key,
        pending_expiry_s=pending_expiry_s,
    )


@dataclass(frozen=True, slots=True)
class FirePlan:
    """What one due schedule does now: fire `tick` (None: fire nothing), why not when it
    does not, and its next tick."""

    tick: datetime | None
    next_fire_ts: datetime
    skipped: str | None = None


def plan(schedule: ScheduleRecord, now: datetime) -> FirePlan:
    """Decide for a due schedule (next_fire_ts <= now). The latest due tick fires when it is
    on time, or when catch_up is "once"; older ticks never do. With overlap "skip", nothing
    fires while the previous tick's step is pending or claimed."""
    spec = schedule.spec
    assert schedule.next_fire_ts is not None
    tick = latest_tick_until(spec, now, schedule.next_fire_ts)
    following = next_tick_after(spec, now)
    on_time = (now - tick).total_seconds() <= MISSED_AFTER_S
    if not on_time and spec.catch_up == "skip":
        return FirePlan(None, following, skipped="missed")
    if spec.overlap == "skip" and schedule.last_step_status in ("pending", "claimed"):
        return FirePlan(None, following, skipped="overlap")
    return FirePlan(tick, following)


def tick_request(
    spec: ScheduleSpec, tick: datetime, pending_expiry_s: float
) -> submission.SubmitRequest:
    """The submit a tick makes: the schedule's template under the tick's key."""
    return _template(spec, tick_key(spec.name, tick), pending_expiry_s)
