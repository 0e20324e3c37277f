"""The schedules file (FLEETQ_SCHEDULES_FILE): schedules declared in TOML, for GitOps.

    [schedules.nightly-report]
    cron = "0 3 * * *"            # or interval_seconds = 3600
    timezone = "Europe/Berlin"    # default UTC
    type = "report"
    args = { scope = "all" }
    overlap = "skip"              # default allow
    catch_up = "once"             # default skip

    [limits.sleep]                # fleet-wide limits of a step type
    max_concurrency = 4
    rate_per_second = 2.0         # with burst = 4 (default: the rate rounded up)

Every pod reconciles it at start: declared schedules and limits are created or overwritten
(and become file ones), file schedules and limits no longer declared are deleted; those
created through the API are left alone. Any error stops the start with a message naming the
entry and field.
"""

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fleetq_server import scheduling
from fleetq_server.config import ConfigError
from fleetq_server.errors import ValidationError
from fleetq_server.limits import validated_limit
from fleetq_server.store.ports import ScheduleAdminPort, TypeLimitPort
from fleetq_server.store.records import ScheduleSpec, TypeLimit

SETTING = "FLEETQ_SCHEDULES_FILE"
T = TypeVar("T")


@dataclass(frozen=True)
class DeclaredFile:
    """What the file declares."""

    schedules: list[ScheduleSpec] = field(default_factory=list)
    limits: list[TypeLimit] = field(default_factory=list)


class ReconcilePort(ScheduleAdminPort, TypeLimitPort, Protocol):
    """What reconciling the file needs from the store."""


def _entry(
    where: str, table: Any, kind: type[T], fixed: dict[str, str], build: Callable[[T], T]
) -> T:
    """A table of the file as a validated `kind` (a dataclass) with the `fixed` fields its
    key gives; `type` in the file is the `step_type` field."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    known = {f.name for f in fields(kind)} - set(fixed)  # type: ignore[arg-type]
    values: dict[str, Any] = dict(fixed)
    for key, value in table.items():
        target = "step_type" if key == "type" else key
        if target not in known or key == "step_type":
            raise ConfigError(f"{where}: unknown key {key!r}")
        values[target] = value
    try:
        return build(kind(**values))
    except (ValidationError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _checked_spec(spec: ScheduleSpec) -> ScheduleSpec:
    scheduling.validate_spec(spec)
    return spec


def _spec(name: str, table: Any) -> ScheduleSpec:
    where = f"{SETTING}: schedules.{name}"
    if isinstance(table, dict) and "type" not in table:
        raise ConfigError(f"{where}: type is required")
    return _entry(where, table, ScheduleSpec, {"name": name}, _checked_spec)


def _limit(step_type: str, table: Any) -> TypeLimit:
    where = f"{SETTING}: limits.{step_type}"
    return _entry(where, table, TypeLimit, {"step_type": step_type}, validated_limit)


def load(path: Path) -> DeclaredFile:
    """Parse and validate the file; ConfigError naming the setting and entry on any error."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{SETTING}={path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{SETTING}={path}: not valid TOML ({exc})") from None
    unknown = set(document) - {"schedules", "limits"}
    if unknown:
        raise ConfigError(f"{SETTING}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    tables = {key: document.get(key, {}) for key in ("schedules", "limits")}
    for key, value in tables.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{SETTING}: {key} must be a table of tables")
    return DeclaredFile(
        schedules=[_spec(name, table) for name, table in tables["schedules"].items()],
        limits=[_limit(step_type, table) for step_type, table in tables["limits"].items()],
    )


async def reconcile(store: ReconcilePort, declared: DeclaredFile) -> list[str]:
    """Make the stored file schedules and limits what `declared` says; the names of the
    schedules deleted and the types whose limits were lifted."""
    now = datetime.now(UTC)
    deleted = await store.schedule_reconcile(
        [
            (spec, None if spec.paused else scheduling.next_tick_after(spec, now))
            for spec in declared.schedules
        ]
    )
    return deleted + await store.type_limit_reconcile(declared.limits)
