"""Numbers that cannot survive every hop exactly (a double holds integers up to 2^53 - 1)
are refused with a 400 naming the field, over both protocols; smaller ones come back
exactly as sent."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from tests.conftest import ServerFactory
from tests.hostile.expect import assert_validation_error
from tests.support.server_process import ServerProcess

LARGEST = 2**53 - 1
UNHANDLED = "hostile.numbers"


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"args": {"n": LARGEST + 2}}, "args.n", id="2^53+1"),
        pytest.param({"args": {"n": 2**63}}, "args.n", id="2^63"),
        pytest.param({"args": {"a": {"ids": [1, -(2**53)]}}}, "args.a.ids[1]", id="nested"),
        pytest.param({"args": {}, "metadata": {"big": 1e300}}, "metadata.big", id="float"),
    ],
)
def test_rest_refuses_numbers_that_cannot_stay_exact(
    client: httpx.Client, body: dict[str, Any], field: str
) -> None:
    key = uuid.uuid4().hex
    response = client.post("/submit", json={"type": UNHANDLED, "idempotency_key": key, **body})

    detail = assert_validation_error(response, field, str(LARGEST))
    assert detail.startswith(f"{field}:")
    # Nothing was stored: the same key with a small number is a fresh step.
    fresh = client.post("/submit", json={"type": UNHANDLED, "args": {}, "idempotency_key": key})
    assert fresh.status_code == 201, fresh.text


def test_grpc_refuses_numbers_that_cannot_stay_exact(
    stub: fleetq_pb2_grpc.FleetQServiceStub,
) -> None:
    request = pb.SubmitStepRequest(type=UNHANDLED)
    request.args.update({"n": float(2**63)})

    with pytest.raises(grpc.RpcError) as raised:
        stub.SubmitStep(request)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith("args.n:")


def test_the_largest_exact_integer_comes_back_unchanged_over_both_protocols(
    client: httpx.Client, stub: fleetq_pb2_grpc.FleetQServiceStub
) -> None:
    args = {"up": LARGEST, "down": -LARGEST}
    step_id = client.post("/submit", json={"type": UNHANDLED, "args": args}).json()["step_id"]

    assert client.get(f"/status/{step_id}").json()["payload"]["args"] == args
    status = stub.GetStepStatus(pb.GetStepStatusRequest(step_id=step_id))
    assert dict(status.payload.args) == {"up": float(LARGEST), "down": float(-LARGEST)}
