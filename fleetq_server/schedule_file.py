"""The schedules file (FLEETQ_SCHEDULES_FILE): schedules declared in TOML, for GitOps.

    [schedules.nightly-report]
    cron = "0 3 * * *"            # or interval_seconds = 3600
    timezone = "Europe/Berlin"    # default UTC
    type = "report"
    args = { scope = "all" }
    overlap = "skip"              # default allow
    catch_up = "once"             # default skip

Every pod reconciles it at start: declared schedules are created or overwritten (and become
file schedules), file schedules no longer declared are deleted; schedules created through
the API are left alone. Any error stops the start with a message naming the entry and field.
"""

import tomllib
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleetq_server import scheduling
from fleetq_server.config import ConfigError
from fleetq_server.errors import ValidationError
from fleetq_server.store.ports import ScheduleAdminPort
from fleetq_server.store.records import ScheduleSpec

SETTING = "FLEETQ_SCHEDULES_FILE"
# File keys that differ from the spec's field names.
_RENAMED = {"type": "step_type"}


@dataclass(frozen=True)
class DeclaredFile:
    """What the file declares."""

    schedules: list[ScheduleSpec] = field(default_factory=list)


def _spec(name: str, table: Any) -> ScheduleSpec:
    where = f"{SETTING}: schedules.{name}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    known = {f.name for f in fields(ScheduleSpec)} - {"name"}
    values: dict[str, Any] = {}
    for key, value in table.items():
        target = _RENAMED.get(key, key)
        if target not in known or key in _RENAMED.values():
            raise ConfigError(f"{where}: unknown key {key!r}")
        values[target] = value
    if "step_type" not in values:
        raise ConfigError(f"{where}: type is required")
    try:
        spec = ScheduleSpec(name=name, **values)
        scheduling.validate_spec(spec)
    except (ValidationError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return spec


def load(path: Path) -> DeclaredFile:
    """Parse and validate the file; ConfigError naming the setting and entry on any error."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{SETTING}={path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{SETTING}={path}: not valid TOML ({exc})") from None
    unknown = set(document) - {"schedules"}
    if unknown:
        raise ConfigError(f"{SETTING}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    schedules = document.get("schedules", {})
    if not isinstance(schedules, dict):
        raise ConfigError(f"{SETTING}: schedules must be a table of tables")
    return DeclaredFile(schedules=[_spec(name, table) for name, table in schedules.items()])


async def reconcile(store: ScheduleAdminPort, declared: DeclaredFile) -> list[str]:
    """Make the stored file schedules what `declared` says; the names deleted."""
    now = datetime.now(UTC)
    return await store.schedule_reconcile(
        [
            (spec, None if spec.paused else scheduling.next_tick_after(spec, now))
            for spec in declared.schedules
        ]
    )
