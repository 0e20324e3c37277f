"""GET /metrics of real pods: step counters, pod and queue gauges, recovery cycles, request
metrics of both protocols, and an exposition `promtool check metrics` accepts.

Counters are per process, and one pod serves most tests here, so each test compares the
exposition before and after what it does, using step types of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.blackbox.contract import FAST_POD_ENV
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

METRICS_POD_ENV = {**FAST_POD_ENV, "FLEETQ_HANDLERS": "tests.handlers.metrics_outcomes"}
GRPC_METHOD = "/fleetq.v1.FleetQService/{}"

Samples = Mapping[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    """One pod shared by the tests that only compare its metrics before and after."""
    return module_server_factory(env=METRICS_POD_ENV)


def exposition(client: httpx.Client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def scrape(client: httpx.Client) -> Samples:
    """Every sample of the exposition, keyed by sample name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition(client))
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 for a labelled series not exported yet (never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def submit(client: httpx.Client, step_type: str, **fields: object) -> str:
    response = client.post("/submit", json={"type": step_type, "args": {}, **fields})
    assert response.status_code == 201, response.text
    step_id: str = response.json()["step_id"]
    return step_id


def wait_for_status(client: httpx.Client, step_id: str, status: str) -> None:
    wait_until(
        lambda: client.get(f"/status/{step_id}").json()["status"] == status,
        timeout=15,
        description=f"{step_id} to be {status}",
    )


def test_step_counters_move_as_steps_complete_retry_and_fail(client: httpx.Client) -> None:
    before = scrape(client)
    done = [submit(client, "hello_world") for _ in range(2)]
    flaky = submit(client, "metrics_flaky")
    broken = submit(client, "metrics_broken", max_retries=1)
    for step_id in [*done, flaky]:
        wait_for_status(client, step_id, "completed")
    wait_for_status(client, broken, "failed")
    after = scrape(client)

    def moved(name: str, step_type: str) -> float:
        labels = {"step_type": step_type}
        return value(after, name, **labels) - value(before, name, **labels)

    # hello_world: 2 runs, 2 completions; flaky: fails once, completes on the retry;
    # broken (max_retries 1): fails, is retried once, then fails terminally.
    expected = {
        "hello_world": {"submitted": 2, "claimed": 2, "completed": 2, "retried": 0, "failed": 0},
        "metrics_flaky": {"submitted": 1, "claimed": 2, "completed": 1, "retried": 1, "failed": 0},
        "metrics_broken": {"submitted": 1, "claimed": 2, "completed": 0, "retried": 1, "failed": 1},
    }
    for step_type, counts in expected.items():
        observed = {event: moved(f"fleetq_steps_{event}_total", step_type) for event in counts}
        assert observed == counts, step_type
        executions = counts["claimed"]
        assert moved("fleetq_step_run_seconds_count", step_type) == executions
        assert moved("fleetq_step_queue_wait_seconds_count", step_type) == executions
        assert moved("fleetq_steps_fenced_total", step_type) == 0


def test_pod_gauges_and_queue_depth_report_the_pod_and_the_shared_queue(
    client: httpx.Client,
) -> None:
    samples = scrape(client)
    assert value(samples, "fleetq_pod_max_capacity") == 8  # 10 x 0.8, the defaults
    assert value(samples, "fleetq_pod_healthy") == 1
    assert value(samples, "fleetq_pod_is_leader") == 1  # the only pod
    statuses = {"pending", "claimed", "completed", "failed"}
    assert statuses <= {
        dict(labels)["status"] for name, labels in samples if name == "fleetq_queue_steps"
    }

    pending_before = value(samples, "fleetq_queue_steps", status="pending")
    submit(client, "metrics_no_pod_runs_this")  # stays pending
    # Queue depth is refreshed on scrape at most every few seconds.
    wait_until(
        lambda: value(scrape(client), "fleetq_queue_steps", status="pending") == pending_before + 1,
        timeout=10,
        description="the pending queue depth to count the new step",
    )


def test_request_metrics_are_labelled_by_route_template_and_grpc_method(
    client: httpx.Client, stub: fleetq_pb2_grpc.FleetQServiceStub
) -> None:
    before = scrape(client)
    missing_id = "step_20240101120000_deadbeef0000"
    assert client.get(f"/status/{missing_id}").status_code == 404
    assert client.get("/no/such/path/deadbeef").status_code == 404
    stub.GetHealth(pb.GetHealthRequest(), timeout=5)
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetStepStatus(pb.GetStepStatusRequest(step_id=missing_id), timeout=5)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    text = exposition(client)
    health, status = GRPC_METHOD.format("GetHealth"), GRPC_METHOD.format("GetStepStatus")
    not_found = {"method": status, "code": "NOT_FOUND"}
    name = "fleetq_grpc_server_requests_total"

    def counted(samples: Samples) -> Samples | None:
        moved = value(samples, name, **not_found) - value(before, name, **not_found)
        return samples if moved > 0 else None

    # An abort's status may reach the client before the interceptor, which sees the abort
    # raised once it is sent, has counted it: wait for the count, then check it is one.
    after = wait_until(
        lambda: counted(scrape(client)), timeout=10, description="the NOT_FOUND counted"
    )

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    status_route = {"method": "GET", "route": "/status/{step_id}"}
    assert moved("fleetq_http_requests_total", **status_route, status="404") == 1
    assert moved("fleetq_http_request_duration_seconds_count", **status_route) == 1
    assert moved("fleetq_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert moved("fleetq_http_requests_total", method="GET", route="/metrics", status="200") >= 1
    assert missing_id not in text and "deadbeef" not in text  # raw paths never become labels

    assert moved("fleetq_grpc_server_requests_total", method=health, code="OK") == 1
    assert moved("fleetq_grpc_server_request_duration_seconds_count", method=health) == 1
    # Only the gRPC call: REST calls are counted once, in the HTTP metrics.
    assert moved(name, **not_found) == 1


def promtool() -> str:
    """promtool from the venv (where `make install` puts it) or PATH; fail when absent."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("promtool", path=search)
    if found is None:
        pytest.fail("promtool not found: `make install` provides it (Debian package prometheus)")
    return found


def test_promtool_accepts_the_exposition(
    client: httpx.Client, stub: fleetq_pb2_grpc.FleetQServiceStub
) -> None:
    # Traffic of every kind first, so each metric family has series to check.
    wait_for_status(client, submit(client, "hello_world"), "completed")
    stub.GetHealth(pb.GetHealthRequest(), timeout=5)
    checked = subprocess.run(
        [promtool(), "check", "metrics"],
        input=exposition(client),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""  # no lint warnings either


def test_recovery_cycles_and_requeued_steps_of_a_lost_pod_are_counted(
    server_factory: ServerFactory,
) -> None:
    fleet_env = {
        **METRICS_POD_ENV,
        "FLEETQ_HEARTBEAT_INTERVAL": "0.2",  # five beats within the short threshold
        "FLEETQ_DEAD_POD_THRESHOLD": "1",
        "FLEETQ_RECOVERY_INTERVAL": "0.2",
    }
    leader = server_factory(env={**fleet_env, "FLEETQ_HANDLERS": ""})  # cannot run metrics_stuck
    with httpx.Client(base_url=leader.http_url, timeout=10) as client:
        wait_until(lambda: client.get("/health").json()["is_leader"], timeout=10)
        worker = server_factory(env=fleet_env)
        step_id = submit(client, "metrics_stuck")
        wait_for_status(client, step_id, "claimed")
        worker.kill()

        def requeued() -> bool:
            return (
                value(scrape(client), "fleetq_steps_requeued_total", step_type="metrics_stuck") == 1
            )

        wait_until(requeued, timeout=15, description="the lost pod's step to be requeued")
        wait_for_status(client, step_id, "pending")
        response = client.post("/admin/recovery/run", json={"dry_run": True})
        assert response.status_code == 200, response.text
        samples = scrape(client)
    assert (
        value(samples, "fleetq_recovery_cycles_total", trigger="automatic", outcome="completed")
        >= 1
    )
    assert value(samples, "fleetq_recovery_cycles_total", trigger="manual", outcome="dry_run") == 1
    assert value(samples, "fleetq_recovery_cycle_duration_seconds_count", trigger="manual") == 1
    assert value(samples, "fleetq_steps_failed_total", step_type="metrics_stuck") == 0
