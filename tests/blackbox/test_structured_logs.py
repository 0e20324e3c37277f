"""A real pod's log output: one JSON object per line with time, level, pod_id and message,
and step_id on the lines about a step."""

from __future__ import annotations

import json
import signal
from datetime import datetime
from typing import Any

import httpx

from tests.blackbox.contract import FAST_POD_ENV
from tests.conftest import ServerFactory
from tests.support.net import free_port
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def run_two_steps(pod: ServerProcess) -> tuple[str, str]:
    """A step that completes and one that fails twice, both finished; returns their ids."""
    with httpx.Client(base_url=pod.http_url, timeout=10) as http:
        ok, bad = (
            http.post("/submit", json=body).json()["step_id"]
            for body in (
                {"type": "hello_world", "args": {}},
                {"type": "sleep", "args": {"seconds": "x"}, "max_retries": 1},
            )
        )
        http.get("/status/step_20240101000000_0000000000000000")  # a 404 on the way

        def finished() -> bool:
            statuses = {http.get(f"/status/{step}").json()["status"] for step in (ok, bad)}
            return statuses == {"completed", "failed"}

        wait_until(finished, timeout=15, description="both steps to finish")
    return ok, bad


def log_lines(pod: ServerProcess) -> list[str]:
    """What the pod wrote, without the command line the test helper puts first."""
    lines = pod.log_text().splitlines()
    assert lines[0].startswith("$ ")
    return lines[1:]


def test_every_log_line_is_a_json_object_with_the_context_fields(
    server_factory: ServerFactory,
) -> None:
    pod = server_factory(
        env={**FAST_POD_ENV, "FLEETQ_POD_ID": "pod-logs", "FLEETQ_LOG_LEVEL": "DEBUG"}
    )
    ok, bad = run_two_steps(pod)
    pod.send_signal(signal.SIGTERM)
    assert pod.wait_for_exit(15) == 0

    entries: list[dict[str, Any]] = []
    for line in log_lines(pod):
        entry = json.loads(line)  # fails the test on any line that is not JSON
        assert isinstance(entry, dict), line
        entries.append(entry)
    for entry in entries:
        assert entry["level"] in LEVELS and isinstance(entry["message"], str)
        assert entry["pod_id"] == "pod-logs"
        assert datetime.fromisoformat(entry["time"]).tzinfo is not None
    by_step: dict[str, list[str]] = {ok: [], bad: []}
    for entry in entries:
        if entry.get("step_id") in by_step:
            by_step[entry["step_id"]].append(entry["message"])
    assert by_step[ok] == [
        "claimed; running attempt 1",
        "attempt 1 recorded: step now completed",
    ]
    assert "attempt 1 recorded: step now pending" in by_step[bad]
    assert by_step[bad][-1] == "attempt 2 recorded: step now failed"
    assert any("step failed (attempt 2)" in message for message in by_step[bad])
    assert entries[-1]["message"] == "pod stopped"


def test_an_error_that_stops_the_pod_is_logged_as_one_json_line(
    server_factory: ServerFactory,
) -> None:
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/fleetq"
    pod = server_factory(database_url=unreachable, wait=False)
    assert pod.wait_for_exit(30) != 0
    entries = [json.loads(line) for line in log_lines(pod)]
    assert entries[-1]["level"] == "CRITICAL"
    assert "cannot connect to PostgreSQL" in entries[-1]["message"]
    assert "Traceback" in entries[-1]["exception"]
