"""Idempotency keys as an attacker uses them: a guessed key must reveal nothing of the step
that holds it, and a header the pod cannot use must be refused, not silently dropped."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from tests.blackbox.contract import FAST_POD_ENV
from tests.conftest import ServerFactory
from tests.hostile.expect import assert_validation_error
from tests.support.server_process import ServerProcess


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env=FAST_POD_ENV)


@pytest.fixture
def step_type() -> str:
    """A type no pod runs and no other test submits: its count is this test's alone."""
    return f"hostile.{uuid.uuid4().hex[:12]}"


def steps_of_type(client: httpx.Client, step_type: str) -> int:
    stats = client.get("/admin/queue").json()
    return int(stats["steps_by_type"].get(step_type, 0))


# ------------------------------------------------------------------ item 5: conflicts


def victim_step(client: httpx.Client, step_type: str, key: str) -> str:
    body = {"type": step_type, "args": {"card": "4111"}, "idempotency_key": key}
    response = client.post("/submit", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["step_id"])


@pytest.mark.parametrize("route", ["/submit", "/submit/batch"])
def test_a_key_conflict_over_rest_names_nothing_of_the_other_step(
    client: httpx.Client, step_type: str, route: str
) -> None:
    key = f"order-{uuid.uuid4().hex[:6]}"
    victim = victim_step(client, step_type, key)
    guess: dict[str, Any] = {"type": step_type, "args": {}, "idempotency_key": key}
    body = guess if route == "/submit" else {"steps": [guess]}

    response = client.post(route, json=body)

    assert response.status_code == 409, response.text
    assert response.json()["error_type"] == "conflict"
    assert "idempotency_key" in response.json()["detail"]
    assert victim not in response.text and "step_" not in response.text


def test_a_key_conflict_over_grpc_names_nothing_of_the_other_step(
    client: httpx.Client, stub: fleetq_pb2_grpc.FleetQServiceStub, step_type: str
) -> None:
    key = f"order-{uuid.uuid4().hex[:6]}"
    victim = victim_step(client, step_type, key)

    with pytest.raises(grpc.RpcError) as raised:
        stub.SubmitStep(pb.SubmitStepRequest(type=step_type, args={}, idempotency_key=key))

    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    details = raised.value.details() or ""
    assert "idempotency_key" in details
    assert victim not in details and "step_" not in details


# ---------------------------------------------------- item 7: invalid Idempotency-Key


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("café".encode(), id="non-ascii"),
        pytest.param(b"order\t42", id="control-character"),
        pytest.param(b"k" * 256, id="too-long"),
    ],
)
def test_an_unusable_idempotency_key_header_is_refused_over_rest(
    client: httpx.Client, step_type: str, header: bytes
) -> None:
    for _retry in range(2):  # a retried submit must not make a second step either
        response = client.post(
            "/submit",
            json={"type": step_type, "args": {}},
            headers={"Idempotency-Key": header},
        )
        assert_validation_error(response, "Idempotency-Key header")
    assert steps_of_type(client, step_type) == 0


@pytest.mark.parametrize(
    "value", [pytest.param("", id="empty"), pytest.param("k" * 256, id="too-long")]
)
def test_an_unusable_idempotency_key_metadata_is_refused_over_grpc(
    client: httpx.Client, stub: fleetq_pb2_grpc.FleetQServiceStub, step_type: str, value: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.SubmitStep(
            pb.SubmitStepRequest(type=step_type, args={}), metadata=[("idempotency-key", value)]
        )

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Idempotency-Key header" in (raised.value.details() or "")
    assert steps_of_type(client, step_type) == 0
