"""The schedules file: TOML parsed into validated specs; any error names the setting, the
entry and the field."""

from pathlib import Path

import pytest

from fleetq_server.config import ConfigError
from fleetq_server.schedule_file import load

GOOD = """
[schedules.nightly]
cron = "0 3 * * *"
timezone = "Europe/Berlin"
type = "report"
args = { scope = "all" }
overlap = "skip"

[schedules.often]
interval_seconds = 30
type = "ping"
paused = true

[limits.sleep]
max_concurrency = 4
rate_per_second = 2.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(text)
    return path


def test_a_good_file_gives_its_schedules(tmp_path: Path) -> None:
    declared = load(write(tmp_path, GOOD))
    nightly, often = declared.schedules
    assert (nightly.name, nightly.step_type, nightly.args) == (
        "nightly",
        "report",
        {"scope": "all"},
    )
    assert (often.interval_seconds, often.paused, often.cron) == (30, True, None)
    [sleep] = declared.limits
    assert (sleep.step_type, sleep.max_concurrency, sleep.rate_per_second) == ("sleep", 4, 2.5)
    assert sleep.burst == 3  # the rate rounded up


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[schedules.x]\ncron = '* * *'\ntype = 'a'\n", "schedules.x: cron:"),
        ("[schedules.x]\ninterval_seconds = 0\ntype = 'a'\n", "schedules.x: interval_seconds:"),
        ("[schedules.x]\ncron = '* * * * *'\ntimezone = 'No/Where'\ntype = 'a'\n", "timezone:"),
        ("[schedules.x]\ncron = '* * * * *'\n", "schedules.x: type is required"),
        ("[schedules.x]\ncron = '* * * * *'\ntype = 'a'\ncolour = 1\n", "unknown key 'colour'"),
        ("[other]\n", "unknown top-level key"),
        ("[limits.a]\nmax_concurrency = -1\n", "limits.a: max_concurrency:"),
        ("[limits.a]\nrate_per_second = -2.0\n", "limits.a: rate_per_second:"),
        ("[limits.a]\nburst = 3\n", "limits.a: max_concurrency:"),
        ("not toml =", "not valid TOML"),
    ],
)
def test_errors_name_the_setting_and_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^FLEETQ_SCHEDULES_FILE") as error:
        load(write(tmp_path, text))
    assert message in str(error.value)
