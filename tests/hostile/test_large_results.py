"""A step's result is bounded so that its status answer fits what every gRPC client accepts
by default (4 MiB): a handler's result over the bound fails the step with a message saying
so, and the largest result admitted still reads back over gRPC with default limits."""

from __future__ import annotations

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from fleetq_server.store.storable import RESULT_MAX_BYTES, RESULT_MAX_VALUES
from tests.blackbox.contract import FAST_POD_ENV, wait_for_status
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess

GRPC_DEFAULT_RECEIVE_BYTES = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(
        env={**FAST_POD_ENV, "FLEETQ_HANDLERS": "tests.handlers.sized_results"}
    )


def _run(client: httpx.Client, zeros: int, status: str) -> str:
    submitted = client.post(
        "/submit", json={"type": "sized_result", "args": {"zeros": zeros}, "max_retries": 0}
    )
    assert submitted.status_code == 201, submitted.text
    step_id: str = submitted.json()["step_id"]
    wait_for_status(client, step_id, status, timeout=30)
    return step_id


@pytest.mark.parametrize(
    ("zeros", "reason"),
    [
        # The case: 1 MiB of "0," is 524,288 values, a 5.7 MB answer if stored.
        pytest.param(512 * 1024, f"larger than {RESULT_MAX_BYTES} bytes", id="mebibyte"),
        # Under the byte bound, but a 4.4 MB Struct.
        pytest.param(400_000, f"more than {RESULT_MAX_VALUES} JSON values", id="values"),
    ],
)
def test_a_result_too_large_for_a_status_answer_fails_the_step_instead_of_being_stored(
    client: httpx.Client, stub: fleetq_pb2_grpc.FleetQServiceStub, zeros: int, reason: str
) -> None:
    step_id = _run(client, zeros=zeros, status="failed")

    answer = stub.GetStepStatus(pb.GetStepStatusRequest(step_id=step_id), timeout=10)

    assert reason in answer.error.message
    assert not answer.HasField("result")
    assert answer.ByteSize() < GRPC_DEFAULT_RECEIVE_BYTES


def test_the_largest_admitted_result_reads_back_over_grpc_with_default_limits(
    client: httpx.Client, grpc_channel: grpc.Channel, stub: fleetq_pb2_grpc.FleetQServiceStub
) -> None:
    zeros = RESULT_MAX_VALUES - 1  # the list itself is the last value
    step_id = _run(client, zeros=zeros, status="completed")

    answer = stub.GetStepStatus(pb.GetStepStatusRequest(step_id=step_id), timeout=10)

    assert len(answer.result.list_value.values) == zeros
    assert answer.ByteSize() < GRPC_DEFAULT_RECEIVE_BYTES
    assert len(client.get(f"/status/{step_id}").json()["result"]) == zeros
