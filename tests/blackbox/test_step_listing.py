"""ListSteps against a real pod over both protocols: newest first, filters, keyset pages
through opaque tokens, items shaped like GetStepStatus, and 400s naming the parameter."""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from tests.blackbox.contract import ERROR_KEYS, FAST_POD_ENV
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env=FAST_POD_ENV)


def _submit_unrun(client: httpx.Client, count: int) -> tuple[str, list[str]]:
    """`count` steps of a type of their own that no pod runs (they stay pending), submitted
    one by one so each is newer than the last; returns the type and the ids."""
    step_type = f"listed_{uuid.uuid4().hex[:8]}"
    ids = []
    for n in range(count):
        response = client.post("/submit", json={"type": step_type, "args": {"n": n}})
        assert response.status_code == 201, response.text
        ids.append(response.json()["step_id"])
    return step_type, ids


def test_rest_pages_walk_a_type_newest_first_with_items_shaped_like_status(
    client: httpx.Client,
) -> None:
    step_type, ids = _submit_unrun(client, 5)

    seen: list[dict[str, object]] = []
    token = ""
    pages = 0
    while True:
        params = {"type": step_type, "page_size": "2"} | ({"page_token": token} if token else {})
        response = client.get("/steps", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"steps", "next_page_token"}
        seen.extend(body["steps"])
        pages += 1
        token = body["next_page_token"]
        if not token:
            break

    assert pages == 3
    assert [item["step_id"] for item in seen] == list(reversed(ids))
    status = client.get(f"/status/{ids[0]}").json()
    assert seen[-1] == status


def test_grpc_filters_by_status_and_client_key(stub: fleetq_pb2_grpc.FleetQServiceStub) -> None:
    key = f"order-{uuid.uuid4().hex}"
    args = pb.SubmitStepRequest(type="hello_world", idempotency_key=key)
    args.args.update({"message": "listed"})
    step_id = stub.SubmitStep(args).step_id

    page = stub.ListSteps(pb.ListStepsRequest(idempotency_key=key))
    assert [step.step_id for step in page.steps] == [step_id]
    assert page.next_page_token == ""
    pending_only = stub.ListSteps(pb.ListStepsRequest(status=["pending"], page_size=1000))
    assert all(step.status == "pending" for step in pending_only.steps)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"status": "finished"}, "status"),
        ({"page_token": "not-a-token"}, "page_token"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "2024-13-01T00:00:00Z"}, "created_before"),
        ({"page_size": "-1"}, "page_size"),
        ({"colour": "red"}, "colour"),
    ],
    ids=["unknown-status", "bad-token", "bad-after", "bad-before", "negative-size", "unknown"],
)
def test_bad_parameters_get_400_naming_them(
    client: httpx.Client, params: dict[str, str], name: str
) -> None:
    response = client.get("/steps", params=params)

    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS and body["error_type"] == "validation_error"
    assert name in body["detail"]


def test_a_bad_token_over_grpc_is_invalid_argument(
    stub: fleetq_pb2_grpc.FleetQServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.ListSteps(pb.ListStepsRequest(page_token="e30"))  # base64 of "{}"
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (raised.value.details() or "")
