"""Starting a pod: `python -m fleetq_server serve`, the `fleetq` script, and bad settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerFactory
from tests.support.net import free_port

FLEETQ_SCRIPT = str(Path(sys.executable).parent / "fleetq")
PROGRAMS = {
    "python-m": [sys.executable, "-m", "fleetq_server"],
    "console-script": [FLEETQ_SCRIPT],
}


@pytest.mark.parametrize("program", PROGRAMS.values(), ids=PROGRAMS.keys())
def test_serve_starts_a_pod_and_sigterm_stops_it_cleanly(
    server_factory: ServerFactory, program: list[str]
) -> None:
    pod = server_factory(program=program)

    health = httpx.get(f"{pod.http_url}/health", timeout=10)

    assert health.status_code == 200
    assert health.json()["status"] == "healthy"
    assert pod.stop() == 0


def _serve_with(
    program: list[str], args: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run `<program> serve` expecting it to refuse to start; on the test's database, loopback
    and free ports, so a regression that starts anyway harms nothing (and times out)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLEETQ_")}
    return subprocess.run(
        [*program, "serve", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("program", PROGRAMS.values(), ids=PROGRAMS.keys())
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FLEETQ_HTTP_PORT", "abc"),
        ("FLEETQ_GRPC_PORT", "70000"),
        ("FLEETQ_HEARTBEAT_INTERVAL", "-1"),
        ("FLEETQ_LOG_FORMAT", "xml"),
    ],
)
def test_an_invalid_setting_stops_start_up_naming_the_variable(
    database_url: str, program: list[str], variable: str, value: str
) -> None:
    env = {
        "FLEETQ_DATABASE_URL": database_url,
        "FLEETQ_HTTP_HOST": "127.0.0.1",
        "FLEETQ_HTTP_PORT": str(free_port()),
        "FLEETQ_GRPC_HOST": "127.0.0.1",
        "FLEETQ_GRPC_PORT": str(free_port()),
        variable: value,
    }

    result = _serve_with(program, [], env)

    assert result.returncode != 0
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


def test_an_invalid_flag_value_is_named_as_the_flag(database_url: str) -> None:
    env = {"FLEETQ_DATABASE_URL": database_url, "FLEETQ_GRPC_PORT": str(free_port())}

    result = _serve_with(PROGRAMS["python-m"], ["--http-port", "abc"], env)

    assert result.returncode != 0
    assert "--http-port" in result.stderr
    assert "Traceback" not in result.stderr
