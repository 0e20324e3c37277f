"""The `fleetq` client commands as a user runs them: the console script in a subprocess,
against real pods, with its output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.blackbox.contract import FAST_POD_ENV
from tests.conftest import ServerFactory
from tests.support.net import free_port
from tests.support.server_process import ServerProcess

FLEETQ = str(Path(sys.executable).parent / "fleetq")
FAST = {**FAST_POD_ENV, "FLEETQ_SHUTDOWN_GRACE": "0"}
ADMIN_TOKEN = "cli-token"
UNKNOWN_STEP = "step_20240101000000_0000000000000000"


@pytest.fixture(scope="module")
def leader(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env={**FAST, "FLEETQ_POD_ID": "cli-leader"})


@pytest.fixture(scope="module")
def follower(module_server_factory: ServerFactory, leader: ServerProcess) -> ServerProcess:
    env = {**FAST, "FLEETQ_POD_ID": "cli-follower", "FLEETQ_ADMIN_TOKEN": ADMIN_TOKEN}
    return module_server_factory(env=env)


def fleetq(
    *args: str, target: ServerProcess | str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `fleetq ARGS --target ...` to completion."""
    address = target if isinstance(target, str) else target.grpc_target
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLEETQ_")}
    return subprocess.run(
        [FLEETQ, *args, "--target", address],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def json_output(*args: str, target: ServerProcess) -> Any:
    run = fleetq(*args, "--json", target=target)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_submit_wait_shows_progress_then_the_finished_step(leader: ServerProcess) -> None:
    run = fleetq(
        "submit", "hello_world", "--args", '{"message": "cli"}', "--priority", "2", "--wait",
        target=leader,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "submitted successfully" in run.stderr
    assert ": completed" in run.stderr.splitlines()[-1]
    fields = dict(line.split(None, 1) for line in run.stdout.splitlines())
    assert (fields["status"], fields["type"], fields["priority"]) == (
        "completed",
        "hello_world",
        "2",
    )
    assert json.loads(fields["result"])["greeting"] == "Hello, cli"


def test_submit_wait_exits_1_when_the_step_fails(leader: ServerProcess) -> None:
    run = fleetq(
        "submit", "sleep", "--args", '{"seconds": "x"}', "--max-retries", "1", "--wait", "--json",
        target=leader,
    )  # fmt: skip
    assert run.returncode == 1
    step = json.loads(run.stdout)
    assert (step["status"], step["retry_count"], step["error"]["type"]) == (
        "failed",
        1,
        "ValueError",
    )
    assert "(retry 1/1)" in run.stderr


def test_submit_then_status_in_json(leader: ServerProcess) -> None:
    submit = (
        "submit", "hello_world", "--args", '{"n": 3}', "--metadata", '{"team": "ops"}',
        "--idempotency-key", "cli-key-1",
    )  # fmt: skip
    submitted = json_output(*submit, target=leader)
    assert json_output(*submit, target=leader)["step_id"] == submitted["step_id"]
    step = json_output("status", submitted["step_id"], target=leader)
    assert (step["args"], step["metadata"]) == ({"n": 3}, {"team": "ops"})
    assert step["status"] in {"pending", "claimed", "completed"}


def test_admin_commands_print_tables_and_json(
    leader: ServerProcess, follower: ServerProcess
) -> None:
    queue = fleetq("queue", target=leader)
    assert queue.returncode == 0, queue.stderr
    assert "POD" in queue.stdout and "cli-follower" in queue.stdout
    stats = json_output("queue", target=leader)
    assert (stats["active_pods"], stats["current_leader"]) == (2, "cli-leader")

    leader_table = fleetq("leader", target=leader)
    assert leader_table.returncode == 0 and "LAST HEARTBEAT" in leader_table.stdout
    election = json_output("leader", target=leader)
    assert [pod["pod_id"] for pod in election["eligible_pods"]] == ["cli-leader", "cli-follower"]

    assert json_output("recover", "--dry-run", target=leader)["status"] == "dry_run"
    forced = fleetq("recover", "--force", target=leader)
    assert forced.returncode == 0 and "completed" in forced.stdout

    health = fleetq("health", target=leader)
    assert health.returncode == 0 and "healthy" in health.stdout
    assert json_output("health", target=follower)["is_leader"] is False


def test_history_commands_print_tables_and_json(leader: ServerProcess) -> None:
    cycle = json_output("recover", "--force", target=leader)
    [listed] = json_output("recovery-cycles", "--page-size", "1", target=leader)["cycles"]
    assert (listed["cycle_id"], listed["leader_pod_id"]) == (cycle["cycle_id"], "cli-leader")
    cycles = fleetq("recovery-cycles", target=leader)
    assert cycles.returncode == 0 and cycle["cycle_id"] in cycles.stdout

    minutes = json_output("throughput", "--minutes", "3", target=leader)["minutes"]
    assert len(minutes) == 3
    assert set(minutes[0]) == {"minute_ts", "completed_steps", "failed_steps"}
    series = fleetq("throughput", "--minutes", "2", target=leader)
    assert series.returncode == 0 and len(series.stdout.splitlines()) == 3
    assert "COMPLETED" in series.stdout


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (("status", UNKNOWN_STEP), 3, "NotFound"),
        (("submit", "bad type!"), 2, "InvalidArgument"),
        (("submit", "hello_world", "--args", "{not json"), 2, "not valid JSON"),
        (("submit", "hello_world", "--args", "[1]"), 2, "must be a JSON object"),
        (("recover",), 1, "Unauthenticated"),
        (("throughput", "--minutes", "0", "--token", ADMIN_TOKEN), 2, "minutes"),
    ],
    ids=[
        "not-found",
        "invalid-type",
        "bad-json",
        "args-not-object",
        "no-admin-token",
        "minutes-out-of-range",
    ],
)
def test_failures_exit_non_zero_with_a_clear_message(
    follower: ServerProcess, args: tuple[str, ...], exit_code: int, message: str
) -> None:
    run = fleetq(*args, target=follower)
    assert (run.returncode, run.stdout) == (exit_code, "")
    assert message in run.stderr and "Traceback" not in run.stderr


def test_the_admin_token_comes_from_the_environment(follower: ServerProcess) -> None:
    env = {"FLEETQ_ADMIN_TOKEN": ADMIN_TOKEN}
    assert fleetq("queue", target=follower, env=env).returncode == 0
    refused = fleetq("recover", target=follower, env=env)
    assert refused.returncode == 1 and "PermissionDenied" in refused.stderr
    assert "cli-leader" in refused.stderr


def test_an_unreachable_pod_exits_4() -> None:
    run = fleetq("health", target=f"127.0.0.1:{free_port()}")
    assert run.returncode == 4
    assert "Unavailable" in run.stderr and "Traceback" not in run.stderr


def test_schedules_and_limits_commands(leader: ServerProcess) -> None:
    created = json_output(
        "schedules",
        "create",
        "cli-every-hour",
        "--interval",
        "3600",
        "--type",
        "hello_world",
        "--args",
        '{"n": 1}',
        target=leader,
    )
    assert (created["interval_seconds"], created["args"], created["source"]) == (
        3600,
        {"n": 1},
        "api",
    )
    updated = json_output(
        "schedules", "update", "cli-every-hour", "--cron", "0 * * * *", target=leader
    )
    assert (updated["cron"], updated["interval_seconds"]) == ("0 * * * *", None)
    assert json_output("schedules", "pause", "cli-every-hour", target=leader)["paused"] is True
    listed = json_output("schedules", "list", target=leader)["schedules"]
    assert [s["name"] for s in listed] == ["cli-every-hour"]
    table = fleetq("schedules", "list", target=leader)
    assert "cli-every-hour" in table.stdout and "0 * * * *" in table.stdout
    bad = fleetq("schedules", "create", "x", "--cron", "0 0 30 2 *", "--type", "a", target=leader)
    assert bad.returncode == 2 and "cron:" in bad.stderr
    assert fleetq("schedules", "delete", "cli-every-hour", target=leader).returncode == 0
    assert fleetq("schedules", "get", "cli-every-hour", target=leader).returncode == 3

    limit = json_output(
        "limits", "set", "sleep", "--max-concurrency", "2", "--rate", "1.5", target=leader
    )
    assert (limit["max_concurrency"], limit["burst"], limit["in_flight"]) == (2, 2, 0)
    assert json_output("limits", "list", target=leader)["limits"][0]["type"] == "sleep"
    negative = fleetq("limits", "set", "sleep", "--max-concurrency", "-1", target=leader)
    assert negative.returncode == 2 and "max_concurrency:" in negative.stderr
    assert fleetq("limits", "delete", "sleep", target=leader).returncode == 0
    assert fleetq("limits", "delete", "sleep", target=leader).returncode == 3
