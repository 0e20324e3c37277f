"""`fleetq schedules list|get|create|update|delete|pause|resume`: the schedule admin calls.

cli.py hands in its common options and output helpers, so tables and `--json` look the same
as every other command's."""

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from fleetq_client.cli_groups import CommandGroup, Run, Show
from fleetq_client.schedule_calls import Schedule, ScheduleFields

Table = Callable[..., str]
JsonArg = Callable[[str], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ScheduleList:
    """`schedules list`'s result (`--json`: {"schedules": [...]})."""

    schedules: tuple[Schedule, ...]


def _template_options(
    parser: argparse.ArgumentParser, json_object: JsonArg, *, creating: bool
) -> None:
    timing = parser.add_mutually_exclusive_group(required=creating)
    timing.add_argument("--cron", help="cron expression: 5 fields, or 6 with seconds first")
    timing.add_argument("--interval", type=int, dest="interval_seconds", help="seconds, >= 1")
    parser.add_argument("--type", required=creating, help="step type each tick submits")
    parser.add_argument("--timezone", help="IANA time zone (default UTC)")
    parser.add_argument("--args", type=json_object, help="each step's args, a JSON object")
    parser.add_argument("--metadata", type=json_object, help="each step's metadata")
    parser.add_argument("--priority", type=int)
    parser.add_argument("--max-retries", type=int)
    parser.add_argument("--overlap", choices=("allow", "skip"))
    parser.add_argument("--catch-up", choices=("skip", "once"))
    if creating:
        parser.add_argument("--paused", action="store_true", default=None, help="create paused")


def _fields(args: argparse.Namespace) -> ScheduleFields:
    given = {name: getattr(args, name, None) for name in ScheduleFields.__annotations__}
    return cast(ScheduleFields, {key: value for key, value in given.items() if value is not None})


def add_schedule_commands(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    common: argparse.ArgumentParser,
    show: Show,
    table: Table,
    json_object: JsonArg,
) -> None:
    """Add `schedules` and its subcommands to the `fleetq` parser's subcommands."""
    group = CommandGroup(commands, "schedules", "periodic schedules (admin)", common, show)

    def one(schedule: Schedule) -> str:
        return table(
            [(key, getattr(schedule, key)) for key in Schedule.__slots__]  # type: ignore[attr-defined]
        )

    def many(listing: ScheduleList) -> str:
        rows = [
            (
                s.name,
                s.cron or f"every {s.interval_seconds}s",
                s.timezone,
                s.type,
                s.paused,
                s.next_fire_time,
                s.last_fire_time,
                s.last_step_status,
            )
            for s in listing.schedules
        ]
        headers = ("name", "when", "timezone", "type", "paused", "next fire", "last fire", "last")
        return table(rows, headers)

    def add(name: str, run: Run, help: str, as_text: Any = one) -> argparse.ArgumentParser:
        return group.add(name, run, help, as_text)

    add("list", lambda c, a: ScheduleList(tuple(c.schedules())), "list the schedules", many)
    add("get", lambda c, a: c.schedule(a.name), "show a schedule").add_argument("name")
    create = add(
        "create", lambda c, a: c.create_schedule(a.name, **_fields(a)), "create a schedule"
    )
    create.add_argument("name")
    _template_options(create, json_object, creating=True)
    update = add(
        "update", lambda c, a: c.update_schedule(a.name, **_fields(a)), "change a schedule"
    )
    update.add_argument("name")
    _template_options(update, json_object, creating=False)
    add("pause", lambda c, a: c.pause_schedule(a.name), "pause a schedule").add_argument("name")
    add("resume", lambda c, a: c.resume_schedule(a.name), "resume a schedule").add_argument("name")
    delete = add("delete", lambda c, a: c.delete_schedule(a.name), "delete a schedule", None)
    delete.add_argument("name")
