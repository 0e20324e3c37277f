"""Pods executing steps: outcomes, retries, timeouts, backoff, claim order and exclusivity.

Real pods run the handlers of ``tests.handlers.recording``; the handlers record every
execution in the test's database, so the tests count what actually ran, and where.
"""

from __future__ import annotations

import itertools
from collections import Counter

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc
from google.protobuf import json_format, struct_pb2

from tests.blackbox.contract import submit, wait_for_status
from tests.blackbox.pods import POD_ENV, create_tables, executions, open_gate
from tests.conftest import ServerFactory
from tests.handlers.recording import TOO_SLOW_TIMEOUT_S, UNSTORABLE_VALUES
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

# Large enough to measure the gap before a retry, small enough to keep retries quick.
BACKOFF_BASE_S = 0.2


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory, module_database_url: str) -> ServerProcess:
    """One pod shared by the tests that each submit and watch steps of their own."""
    create_tables(module_database_url)
    return module_server_factory(env={**POD_ENV, "FLEETQ_RETRY_BACKOFF_BASE": str(BACKOFF_BASE_S)})


def pod_id(client: httpx.Client) -> str:
    pod_id: str = client.get("/health").json()["pod_id"]
    return pod_id


def test_hello_world_submitted_over_rest_completes_with_its_greeting(
    client: httpx.Client,
) -> None:
    step_id = submit(client, {"type": "hello_world", "args": {"message": "FLEET-Q"}})
    body = wait_for_status(client, step_id, "completed")
    assert body["result"] == {"greeting": "Hello, FLEET-Q", "step_id": step_id}
    assert (body["error"], body["retry_count"]) == (None, 0)
    assert body["claimed_by"] == pod_id(client)


def test_hello_world_submitted_over_grpc_completes_with_its_greeting(pod: ServerProcess) -> None:
    args = struct_pb2.Struct()
    args.update({"message": "gRPC"})
    with grpc.insecure_channel(pod.grpc_target) as channel:
        stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
        step_id = stub.SubmitStep(pb.SubmitStepRequest(type="hello_world", args=args)).step_id

        def completed() -> pb.GetStepStatusResponse | None:
            status = stub.GetStepStatus(pb.GetStepStatusRequest(step_id=step_id), timeout=5)
            return status if status.status == "completed" else None

        status = wait_until(completed, timeout=15, description=f"{step_id} to complete")
    assert json_format.MessageToDict(status.result) == {
        "greeting": "Hello, gRPC",
        "step_id": step_id,
    }
    assert not status.HasField("error")
    assert status.retry_count == 0


def test_a_step_failing_n_times_completes_after_exactly_n_retries(client: httpx.Client) -> None:
    body = {"type": "fail_then_succeed", "args": {"failures": 2}, "max_retries": 3}
    step_id = submit(client, body)
    status = wait_for_status(client, step_id, "completed")
    assert status["retry_count"] == 2
    result = status["result"]
    assert (result["attempt"], result["retry_count"]) == (3, 2), "three executions in all"
    assert result["thread"].startswith("fleetq-step"), "a blocking handler runs off the loop"
    assert status["error"] is None, "success clears the last failure"


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_an_always_failing_step_fails_after_exactly_max_retries(
    client: httpx.Client, module_database_url: str, max_retries: int
) -> None:
    step_id = submit(client, {"type": "always_fail", "args": {}, "max_retries": max_retries})
    status = wait_for_status(client, step_id, "failed")
    assert status["retry_count"] == max_retries
    assert status["error"] == {
        "type": "ValueError",
        "message": f"always fails (retry_count={max_retries})",
    }, "the last execution's error is stored"
    runs = executions(module_database_url, [step_id])
    assert [run["retry_count"] for run in runs] == list(range(max_retries + 1))


def test_each_retry_waits_at_least_its_exponential_backoff(
    client: httpx.Client, module_database_url: str
) -> None:
    step_id = submit(client, {"type": "always_fail", "args": {}, "max_retries": 3})
    wait_for_status(client, step_id, "failed")
    starts = [run["started_ts"] for run in executions(module_database_url, [step_id])]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(starts)]
    # Retry n waits base * 2^n with "equal jitter": never less than half of that.
    minimum = [BACKOFF_BASE_S * 2**n / 2 for n in range(3)]
    assert all(gap >= least for gap, least in zip(gaps, minimum, strict=True)), (gaps, minimum)


def test_exceeding_the_type_timeout_is_a_failure(
    client: httpx.Client, module_database_url: str
) -> None:
    step_id = submit(client, {"type": "too_slow", "args": {}, "max_retries": 1})
    status = wait_for_status(client, step_id, "failed")
    assert status["retry_count"] == 1
    assert status["error"]["type"] == "TimeoutError"
    assert f"{TOO_SLOW_TIMEOUT_S:g}s" in status["error"]["message"]
    assert len(executions(module_database_url, [step_id])) == 2


def test_a_timeout_error_raised_by_the_handler_is_an_ordinary_failure(
    client: httpx.Client,
) -> None:
    step_id = submit(client, {"type": "raise_timeout_error", "args": {}, "max_retries": 1})
    status = wait_for_status(client, step_id, "failed")
    assert status["retry_count"] == 1
    assert status["error"] == {"type": "TimeoutError", "message": "upstream did not answer"}


@pytest.mark.parametrize("kind", sorted(UNSTORABLE_VALUES))
def test_a_result_the_database_cannot_store_fails_the_step_alone(
    client: httpx.Client, kind: str
) -> None:
    bad = submit(client, {"type": "return_unstorable", "args": {"kind": kind}, "max_retries": 0})
    good = [submit(client, {"type": "hello_world", "args": {}}) for _ in range(3)]
    status = wait_for_status(client, bad, "failed")
    assert status["error"]["type"] == "ValueError"
    for step_id in good:  # outcomes written together with the bad one are not held up
        wait_for_status(client, step_id, "completed")


def test_an_error_message_the_database_cannot_store_is_stored_cleaned(
    client: httpx.Client,
) -> None:
    step_id = submit(client, {"type": "raise_unstorable", "args": {}, "max_retries": 0})
    status = wait_for_status(client, step_id, "failed")
    assert status["error"] == {"type": "ValueError", "message": "nul\ufffdbyte"}


def test_a_step_of_a_type_no_pod_runs_stays_pending_and_unclaimed(client: httpx.Client) -> None:
    orphan = submit(client, {"type": "nobody_runs_this", "args": {}, "priority": 1000})
    later = submit(client, {"type": "hello_world", "args": {}, "priority": -1000})
    wait_for_status(client, later, "completed")  # the pod claimed since, and passed it over
    status = client.get(f"/status/{orphan}").json()
    assert (status["status"], status["claimed_by"], status["retry_count"]) == ("pending", None, 0)


def test_one_slot_runs_higher_priority_first_and_equal_priority_in_submit_order(
    server_factory: ServerFactory, database_url: str
) -> None:
    create_tables(database_url)
    single = {"FLEETQ_MAX_PARALLELISM": "1", "FLEETQ_CAPACITY_THRESHOLD": "1"}
    pod = server_factory(env={**POD_ENV, **single})
    with httpx.Client(base_url=pod.http_url, timeout=10) as client:
        busy = submit(client, {"type": "gated", "args": {"gate": "busy"}, "priority": -1000})
        wait_for_status(client, busy, "claimed")  # the only slot is taken: the rest queue up
        priorities = [0, 5, 0, 10, 5, -3, 0]
        step_ids = [
            submit(client, {"type": "record", "args": {}, "priority": priority})
            for priority in priorities
        ]
        open_gate(database_url, "busy")
        for step_id in step_ids:
            wait_for_status(client, step_id, "completed")
    runs = executions(database_url, step_ids)
    # sorted() is stable: equal priorities keep their submit order.
    by_priority = sorted(zip(priorities, step_ids, strict=True), key=lambda pair: -pair[0])
    assert [run["step_id"] for run in runs] == [step_id for _, step_id in by_priority]
    assert max(run["running"] for run in runs) == 1


@pytest.mark.parametrize("pod_count", [2, 3])
def test_pods_draining_1000_steps_run_each_exactly_once_within_capacity(
    server_factory: ServerFactory, database_url: str, pod_count: int
) -> None:
    create_tables(database_url)
    pods = [server_factory(env=POD_ENV, wait=False) for _ in range(pod_count)]
    for pod in pods:
        pod.wait_until_healthy()
    with httpx.Client(base_url=pods[0].http_url, timeout=30) as client:
        max_capacity = client.get("/health").json()["max_capacity"]
        batch = {"steps": [{"type": "record", "args": {"n": n}} for n in range(1000)]}
        response = client.post("/submit/batch", json=batch)
        assert response.status_code == 201, response.text
        step_ids = [step["step_id"] for step in response.json()["steps"]]
        wait_until(
            lambda: client.get("/admin/queue").json()["completed_steps"] == 1000,
            timeout=60,
            description="1,000 steps to complete",
        )
    runs = executions(database_url)
    assert Counter(run["step_id"] for run in runs) == Counter(step_ids), "each exactly once"
    peak_by_pod: dict[int, int] = {}
    for run in runs:
        peak_by_pod[run["pid"]] = max(peak_by_pod.get(run["pid"], 0), run["running"])
    assert len(peak_by_pod) == pod_count, f"every pod took part: {peak_by_pod}"
    assert max(peak_by_pod.values()) <= max_capacity, peak_by_pod
