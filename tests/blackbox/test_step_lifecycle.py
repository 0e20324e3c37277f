"""CancelStep and RetryStep against a real pod over both protocols: pending steps cancelled
at once, running ones stopped (async handlers cancelled, blocking ones told), finished ones
refused, a cancel racing a completion ending in one terminal state, retries with their
attempt history, and the `fleetq` list / cancel / retry commands."""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from tests.blackbox.contract import ERROR_KEYS, FAST_POD_ENV, submit, wait_for_status
from tests.blackbox.test_cli_client import fleetq
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

UNRUN = "lifecycle_nobody_runs"
RACES = 200


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    env = {**FAST_POD_ENV, "FLEETQ_HANDLERS": "tests.handlers.lifecycle"}
    return module_server_factory(env={**env, "FLEETQ_MAX_PARALLELISM": "40"})


def test_rest_cancels_a_pending_step_at_once_twice_and_retries_it(client: httpx.Client) -> None:
    step_id = submit(client, {"type": UNRUN, "args": {}})
    before = client.get("/admin/queue").json()["cancelled_steps"]

    first = client.post(f"/steps/{step_id}:cancel")
    again = client.post(f"/steps/{step_id}:cancel", json={})

    assert first.status_code == 200, first.text
    assert first.json()["step"]["status"] == "cancelled"
    assert again.status_code == 200 and again.json()["step"]["status"] == "cancelled"
    assert client.get("/admin/queue").json()["cancelled_steps"] == before + 1
    retried = client.post(f"/steps/{step_id}:retry")
    assert retried.status_code == 200, retried.text
    body = retried.json()["step"]
    assert (body["status"], body["retry_count"], body["cancel_requested"]) == (
        "pending",
        0,
        False,
    )


def test_rest_refuses_finished_and_unknown_steps(client: httpx.Client) -> None:
    step_id = submit(client, {"type": "lifecycle_brief", "args": {}})
    wait_for_status(client, step_id, "completed")

    cancel = client.post(f"/steps/{step_id}:cancel")
    retry = client.post(f"/steps/{step_id}:retry")
    unknown = client.post("/steps/step_20240101000000_0000000000000000:cancel")

    assert cancel.status_code == 409 and cancel.json()["error_type"] == "conflict"
    assert set(cancel.json()) == ERROR_KEYS and "completed" in cancel.json()["detail"]
    assert retry.status_code == 409 and retry.json()["error_type"] == "conflict"
    assert unknown.status_code == 404 and unknown.json()["error_type"] == "not_found"
    assert client.get(f"/status/{step_id}").json()["status"] == "completed"


@pytest.mark.parametrize("step_type", ["lifecycle_parked", "lifecycle_polite"])
def test_grpc_cancel_stops_a_running_handler_and_the_step_ends_cancelled(
    stub: fleetq_pb2_grpc.FleetQServiceStub, client: httpx.Client, step_type: str
) -> None:
    request = pb.SubmitStepRequest(type=step_type)
    request.args.SetInParent()
    step_id = stub.SubmitStep(request).step_id
    wait_for_status(client, step_id, "claimed")

    answer = stub.CancelStep(pb.CancelStepRequest(step_id=step_id)).step

    assert answer.cancel_requested and answer.status in ("claimed", "cancelled")
    final = wait_for_status(client, step_id, "cancelled")
    assert final["retry_count"] == 0
    [attempt] = final["attempts"]
    assert (attempt["number"], attempt["outcome"]) == (1, "cancelled")
    assert attempt["finished_ts"] is not None
    if step_type == "lifecycle_polite":  # the blocking handler saw context.cancelled
        assert final["result"] == "stopped early"


def test_grpc_retry_keeps_the_attempt_history(
    stub: fleetq_pb2_grpc.FleetQServiceStub, client: httpx.Client
) -> None:
    request = pb.SubmitStepRequest(type="lifecycle_broken", max_retries=0)
    request.args.SetInParent()
    step_id = stub.SubmitStep(request).step_id
    wait_for_status(client, step_id, "failed")

    retried = stub.RetryStep(pb.RetryStepRequest(step_id=step_id)).step
    # The answer is the step as it now stands: the pod runs this type, so the retried step
    # may be claimed, or even failed again, by the time it is read back.
    assert retried.retry_count == 0
    assert retried.status in ("pending", "claimed") or len(retried.attempts) == 2
    final = wait_for_status(client, step_id, "failed")

    assert [(a["number"], a["outcome"]) for a in final["attempts"]] == [
        (1, "failed"),
        (2, "failed"),
    ]
    assert final["attempts"][0]["error"] == {"type": "RuntimeError", "message": "fails on purpose"}
    with pytest.raises(grpc.RpcError) as raised:
        stub.RetryStep(pb.RetryStepRequest(step_id="step_20240101000000_0000000000000000"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def _race_once(pod: ServerProcess, use_grpc: bool) -> tuple[int, str]:
    """Submit a brief step, cancel it after a random pause; (cancel answer, final status)."""
    with httpx.Client(base_url=pod.http_url, timeout=10) as client:
        seconds = random.uniform(0, 0.03)
        step_id = submit(client, {"type": "lifecycle_brief", "args": {"seconds": seconds}})
        time.sleep(random.uniform(0, 0.03))  # sometimes pending, claimed or finished
        if use_grpc:
            with grpc.insecure_channel(pod.grpc_target) as channel:
                stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
                try:
                    stub.CancelStep(pb.CancelStepRequest(step_id=step_id))
                    code = 200
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
                    code = 409
        else:
            code = client.post(f"/steps/{step_id}:cancel").status_code

        def finished() -> dict[str, Any] | None:
            body: dict[str, Any] = client.get(f"/status/{step_id}").json()
            return body if body["status"] in ("completed", "cancelled") else None

        final = wait_until(finished, timeout=15, description=f"{step_id} to finish")
        return code, final["status"]


def test_a_cancel_racing_a_completion_ends_in_exactly_one_terminal_state(
    pod: ServerProcess,
) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda n: _race_once(pod, n % 2 == 0), range(RACES)))

    for code, status in outcomes:
        assert (code, status) in ((200, "cancelled"), (409, "completed")), outcomes
    assert {code for code, _ in outcomes} == {200, 409}  # both sides won sometimes


def test_cli_lists_cancels_and_retries_with_json(pod: ServerProcess, client: httpx.Client) -> None:
    step_id = submit(client, {"type": UNRUN, "args": {}, "idempotency_key": f"cli-{id(pod)}"})

    listed = fleetq("list", "--type", UNRUN, "--status", "pending", "--json", target=pod)
    cancelled = fleetq("cancel", step_id, "--json", target=pod)
    refused = fleetq("cancel", step_id + "0", target=pod)
    retried = fleetq("retry", step_id, "--json", target=pod)
    table = fleetq("list", "--type", UNRUN, "--page-size", "1", target=pod)

    assert listed.returncode == 0, listed.stderr
    assert step_id in [step["step_id"] for step in json.loads(listed.stdout)["steps"]]
    assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["status"] == "cancelled"
    assert refused.returncode == 3  # not found
    assert retried.returncode == 0 and json.loads(retried.stdout)["status"] == "pending"
    assert table.returncode == 0 and "STEP" in table.stdout and UNRUN in table.stdout
