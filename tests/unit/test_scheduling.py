"""Schedule timing (cronsim, zoneinfo) and the fire decision: pure functions."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from fleetq_server import scheduling
from fleetq_server.errors import ValidationError
from fleetq_server.store.records import ScheduleRecord, ScheduleSpec

BERLIN = ZoneInfo("Europe/Berlin")
SPEC = ScheduleSpec(
    name="nightly", step_type="hello_world", cron="30 2 * * *", timezone="Europe/Berlin"
)


def ticks(spec: ScheduleSpec, start: datetime, count: int) -> list[datetime]:
    out, moment = [], start
    for _ in range(count):
        moment = scheduling.next_tick_after(spec, moment)
        out.append(moment)
    return out


def test_a_time_the_spring_forward_skips_fires_right_after_the_jump() -> None:
    # 2026-03-29: Berlin's clocks go from 02:00 to 03:00; 02:30 does not exist that night.
    fired = ticks(SPEC, datetime(2026, 3, 28, 12, tzinfo=BERLIN), 3)
    assert [t.astimezone(BERLIN).isoformat() for t in fired] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_a_time_the_fall_back_repeats_fires_once() -> None:
    # 2026-10-25: Berlin's 02:00-03:00 happens twice; the schedule fires on the first.
    fired = ticks(SPEC, datetime(2026, 10, 24, 12, tzinfo=BERLIN), 3)
    assert [t.isoformat() for t in fired] == [
        "2026-10-25T00:30:00+00:00",
        "2026-10-26T01:30:00+00:00",
        "2026-10-27T01:30:00+00:00",
    ]


def test_an_every_30_minutes_schedule_keeps_its_pace_through_the_repeated_hour() -> None:
    spec = replace(SPEC, cron="*/30 * * * *")
    fired = ticks(spec, datetime(2026, 10, 24, 23, 50, tzinfo=UTC), 5)
    assert [t - fired[0] for t in fired] == [timedelta(minutes=30 * i) for i in range(5)]


def test_six_fields_put_seconds_first_and_intervals_align_to_the_epoch() -> None:
    start = datetime(2026, 1, 1, 0, 0, 7, tzinfo=UTC)
    assert ticks(replace(SPEC, cron="*/5 * * * * *", timezone="UTC"), start, 2) == [
        datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 15, tzinfo=UTC),
    ]
    every_minute = replace(SPEC, cron=None, interval_seconds=60)
    assert ticks(every_minute, start, 1) == [datetime(2026, 1, 1, 0, 1, tzinfo=UTC)]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cron": "61 * * * *"}, "cron:"),
        ({"cron": "0 0 30 2 *"}, "cron:"),
        ({"cron": "* * *"}, "cron:"),
        ({"timezone": "Mars/Olympus"}, "timezone:"),
        ({"cron": None, "interval_seconds": 0}, "interval_seconds:"),
        ({"interval_seconds": 5}, "cron:"),
        ({"name": "bad name"}, "name:"),
        ({"overlap": "never"}, "overlap:"),
        ({"catch_up": "all"}, "catch_up:"),
        ({"step_type": ""}, "type:"),
        ({"priority": 5000}, "priority:"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=f"^{field}"):
        scheduling.validate_spec(replace(SPEC, **changes))  # type: ignore[arg-type]


def test_the_tick_key_is_the_schedule_name_and_the_utc_tick_time() -> None:
    tick = datetime(2026, 3, 29, 3, tzinfo=BERLIN)
    assert scheduling.tick_key("nightly", tick) == "schedule:nightly:2026-03-29T01:00:00Z"


def record(
    spec: ScheduleSpec, next_fire: datetime, last_status: str | None = None
) -> ScheduleRecord:
    return ScheduleRecord(spec, "api", next_fire, None, None, last_status, next_fire, next_fire)


EVERY_10S = replace(SPEC, cron=None, interval_seconds=10, timezone="UTC")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_an_on_time_tick_fires_and_the_next_one_follows() -> None:
    plan = scheduling.plan(record(EVERY_10S, T0), T0 + timedelta(seconds=1))
    assert plan.tick == T0
    assert plan.next_fire_ts == T0 + timedelta(seconds=10)


@pytest.mark.parametrize(("catch_up", "fires"), [("skip", False), ("once", True)])
def test_after_downtime_missed_ticks_are_skipped_or_run_once(catch_up: str, fires: bool) -> None:
    now = T0 + timedelta(hours=2, seconds=3)
    plan = scheduling.plan(record(replace(EVERY_10S, catch_up=catch_up), T0), now)
    # The latest due tick (2 hours of ticks later) is 3 s late: on time, so it fires either
    # way; the 719 before it never do.
    assert plan.tick == T0 + timedelta(hours=2)
    hourly = replace(EVERY_10S, interval_seconds=3600, catch_up=catch_up)
    late = scheduling.plan(record(hourly, T0), T0 + timedelta(minutes=30))
    assert (late.tick == T0) is fires
    assert late.skipped == (None if fires else "missed")
    assert late.next_fire_ts == T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("status", "fires"), [("pending", False), ("claimed", False), ("completed", True)]
)
def test_overlap_skip_waits_for_the_previous_run(status: str, fires: bool) -> None:
    spec = replace(EVERY_10S, overlap="skip")
    plan = scheduling.plan(record(spec, T0, status), T0)
    assert (plan.tick is not None) is fires


def test_a_cron_schedule_down_for_days_finds_its_latest_tick() -> None:
    spec = replace(SPEC, cron="*/5 * * * *", timezone="UTC", catch_up="once")
    now = T0 + timedelta(days=3, minutes=7)
    plan = scheduling.plan(record(spec, T0), now)
    assert plan.tick == T0 + timedelta(days=3, minutes=5)
    assert plan.next_fire_ts == T0 + timedelta(days=3, minutes=10)
