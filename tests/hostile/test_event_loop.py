"""No legal request may hold a pod's event loop: a cap on JSON values bounds the work of
every request, large conversions run off the loop, and a truly stuck loop still gets its
pod recovered."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc
from google.protobuf import struct_pb2

from fleetq_client import FleetQClient
from tests.blackbox.contract import FAST_POD_ENV
from tests.conftest import ServerFactory
from tests.faults.fleet import DEAD_THRESHOLD_S, SLACK_S, pod_id, start_pods, step_status
from tests.hostile.bodies import nested_lists_body, zeros_body
from tests.hostile.loop_blocker import BLOCK_LOOP_TYPE
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

MIB = 1 << 20
CAP = 100  # FLEETQ_MAX_JSON_VALUES of the capped pod
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env={**FAST_POD_ENV, "FLEETQ_MAX_JSON_VALUES": str(CAP)})


def _error(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 400, response.text
    body: dict[str, str] = response.json()
    assert body["error_type"] == "validation_error"
    return body


def test_args_over_the_value_cap_are_refused_over_rest_naming_the_field(
    client: httpx.Client,
) -> None:
    # args {"n": [CAP zeros]}: the object, the list and CAP numbers, over CAP in all.
    response = client.post("/submit", json={"type": "t", "args": {"n": [0] * CAP}})
    detail = _error(response)["detail"]
    assert detail.startswith("args:") and str(CAP) in detail, detail
    # Exactly at the cap is accepted.
    accepted = client.post("/submit", json={"type": "t", "args": {"n": [0] * (CAP - 2)}})
    assert accepted.status_code == 201, accepted.text


def test_metadata_counts_with_args_against_the_cap(client: httpx.Client) -> None:
    half = {"n": [0] * (CAP // 2)}
    response = client.post("/submit", json={"type": "t", "args": half, "metadata": half})
    assert _error(response)["detail"].startswith("metadata:")


def test_args_over_the_value_cap_are_refused_over_grpc_naming_the_field(
    stub: fleetq_pb2_grpc.FleetQServiceStub,
) -> None:
    args = struct_pb2.Struct()
    args.update({"n": [0] * CAP})
    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitStep(pb.SubmitStepRequest(type="t", args=args), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("args:")


def test_a_batch_shares_one_value_budget(stub: fleetq_pb2_grpc.FleetQServiceStub) -> None:
    args = struct_pb2.Struct()
    args.update({"n": [0] * (CAP // 4)})
    steps = [pb.SubmitStepRequest(type="t", args=args) for _ in range(5)]
    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitBatch(pb.SubmitBatchRequest(steps=steps), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("steps[3].args:")


@pytest.mark.parametrize("body", [nested_lists_body(MIB - 64), zeros_body(MIB - 64)])
def test_a_megabyte_of_values_is_refused_before_it_is_parsed(
    client: httpx.Client, body: bytes
) -> None:
    detail = _error(client.post("/submit", content=body, headers=JSON))["detail"]
    assert "JSON values" in detail, detail


def test_the_event_loop_lag_is_exported(client: httpx.Client) -> None:
    metrics = client.get("/metrics").text
    count = next(
        line
        for line in metrics.splitlines()
        if line.startswith("fleetq_event_loop_lag_seconds_count")
    )
    assert float(count.split()[-1]) > 0


@pytest.fixture
def uncapped(server_factory: ServerFactory) -> ServerProcess:
    """A pod that lets a megabyte of nested lists through, to be processed in full."""
    return server_factory(env={**FAST_POD_ENV, "FLEETQ_MAX_JSON_VALUES": str(10**6)})


@dataclass
class HeavySubmit:
    """The worst body, submitted in a thread: `answered` is set once its answer arrived,
    after `seconds`."""

    answered: threading.Event = field(default_factory=threading.Event)
    seconds: float = 0.0


@pytest.fixture
def heavy_submit(uncapped: ServerProcess) -> Iterator[HeavySubmit]:
    heavy = HeavySubmit()

    def send() -> None:
        body = nested_lists_body(MIB - 64)
        began = time.perf_counter()
        httpx.post(f"{uncapped.http_url}/submit", content=body, headers=JSON, timeout=120)
        heavy.seconds = time.perf_counter() - began
        heavy.answered.set()

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    yield heavy
    thread.join(timeout=120)


def test_health_answers_while_a_worst_case_body_is_processed(
    uncapped: ServerProcess, heavy_submit: HeavySubmit
) -> None:
    # That body costs the pod seconds of work. /health, asked back to back meanwhile,
    # must never wait for a good part of it, as it did while the work ran on the loop.
    waits = []
    with httpx.Client(base_url=uncapped.http_url, timeout=120) as http:
        while not heavy_submit.answered.is_set():
            began = time.perf_counter()
            assert http.get("/health").status_code == 200
            waits.append(time.perf_counter() - began)
    assert len(waits) > 1
    assert max(waits) < heavy_submit.seconds / 10, (max(waits), heavy_submit.seconds)


def test_the_largest_step_the_cap_allows_fits_the_shipped_client(
    server_factory: ServerFactory,
) -> None:
    pod = server_factory(env=FAST_POD_ENV)  # the default cap
    with httpx.Client(base_url=pod.http_url, timeout=60) as http:
        # A megabyte of zeros is refused (its status would be 5.7 MB over gRPC) ...
        assert http.post("/submit", content=zeros_body(MIB - 64), headers=JSON).status_code == 400
        # ... and the largest that is accepted: a value per number at the cap (numbers cost
        # gRPC the most: 11 bytes each), the rest of the megabyte one string.
        numbers = [0] * 9_990
        filler = "x" * (MIB - 64 - 2 * len(numbers))
        response = http.post("/submit", json={"type": "t", "args": {"n": numbers, "s": filler}})
        assert response.status_code == 201, response.text
        step_id = response.json()["step_id"]
    with FleetQClient(pod.grpc_target) as client:
        status = client.status(step_id)
    assert status.args["n"] == numbers and status.args["s"] == filler


def test_a_pod_whose_loop_is_stuck_past_the_dead_threshold_is_recovered(
    server_factory: ServerFactory,
) -> None:
    pods = start_pods(
        server_factory,
        ["pod-a", "pod-b"],
        env={"FLEETQ_HANDLERS": "tests.hostile.loop_blocker", "FLEETQ_MAX_PARALLELISM": "1"},
    )
    blocked = 4 * DEAD_THRESHOLD_S
    # Due a moment later, so that a claim loop starts it: a step due at once is claimed by
    # the pod receiving it inside the submit's transaction and started before the submit's
    # answer is written, and this handler would hold that answer with the loop.
    response = httpx.post(
        pods[0].http_url + "/submit",
        json={"type": BLOCK_LOOP_TYPE, "args": {"seconds": blocked}, "delay_seconds": 0.5},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    step_id = response.json()["step_id"]

    def completed() -> dict[str, Any] | None:
        for pod in pods:  # the stuck pod answers nothing while stuck
            try:
                status = step_status(pod, step_id)
            except httpx.TransportError:
                continue
            return status if status["status"] == "completed" else None
        return None

    status = wait_until(
        completed,
        timeout=blocked + 2 * DEAD_THRESHOLD_S + SLACK_S,
        description="the step to be requeued and completed by the other pod",
    )
    # The first attempt held its pod's loop past the dead threshold: the fleet declared
    # that pod dead and the other one ran the step again.
    assert status["result"]["attempt"] == 2
    (stuck,) = [p for p in pods if pod_id(p) != status["result"]["pod_id"]]
    wait_until(
        lambda: f"re-registered as {pod_id(stuck)}-r2" in stuck.log_text(),
        timeout=blocked + SLACK_S,
        description="the stuck pod to come back under a new id",
    )
