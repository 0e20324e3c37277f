"""Client de-duplication of submits (idempotency keys) and the idempotency endpoint.

One pod serves the module; every test uses keys of its own and compares step counts only
before and after its own requests.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from tests.blackbox.contract import (
    FAST_POD_ENV,
    assert_error,
    submit,
    total_steps,
    wait_for_status,
)
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess

CONCURRENT_DUPLICATES = 20
# No pod has a handler for this type, so its steps stay pending.
UNHANDLED_TYPE = "blackbox.unhandled"


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(
        env={**FAST_POD_ENV, "FLEETQ_HANDLERS": "tests.handlers.key_probe"}
    )


@pytest.fixture
def key() -> str:
    return f"order-{secrets.token_hex(8)}"


def _step(**fields: Any) -> dict[str, Any]:
    return {"type": UNHANDLED_TYPE, "args": {"order": 42, "items": ["a", "b"]}, **fields}


def test_a_repeat_with_the_same_key_returns_the_original_step(
    client: httpx.Client, key: str
) -> None:
    before = total_steps(client)
    first = client.post("/submit", json=_step(idempotency_key=key))

    repeat = client.post("/submit", json=_step(idempotency_key=key))

    assert first.status_code == 201, first.text
    assert repeat.status_code == 200, repeat.text
    assert set(repeat.json()) == {"step_id", "status", "message"}
    assert repeat.json()["step_id"] == first.json()["step_id"]
    assert repeat.json()["status"] == "submitted"
    assert total_steps(client) == before + 1


def test_the_idempotency_key_header_deduplicates_like_the_body_field(
    client: httpx.Client, key: str
) -> None:
    before = total_steps(client)
    first = client.post("/submit", json=_step(), headers={"Idempotency-Key": key})

    by_header = client.post("/submit", json=_step(), headers={"Idempotency-Key": key})
    by_body = client.post("/submit", json=_step(idempotency_key=key))

    assert first.status_code == 201, first.text
    assert (by_header.status_code, by_body.status_code) == (200, 200)
    assert by_header.json()["step_id"] == by_body.json()["step_id"] == first.json()["step_id"]
    assert total_steps(client) == before + 1


def test_a_repeat_spelling_out_defaults_and_reordering_keys_is_the_same_payload(
    client: httpx.Client, key: str
) -> None:
    first = submit(
        client, {"type": UNHANDLED_TYPE, "args": {"a": 1, "b": 2}, "idempotency_key": key}
    )

    repeat = client.post(
        "/submit",
        json={
            "idempotency_key": key,
            "args": {"b": 2, "a": 1},
            "type": UNHANDLED_TYPE,
            "metadata": {},
            "priority": 0,
            "max_retries": 3,
        },
    )

    assert repeat.status_code == 200, repeat.text
    assert repeat.json()["step_id"] == first


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"args": {"order": 43}}, id="args"),
        pytest.param({"type": "blackbox.other"}, id="type"),
        pytest.param({"metadata": {"user": "bob"}}, id="metadata"),
        pytest.param({"priority": 5}, id="priority"),
        pytest.param({"max_retries": 0}, id="max_retries"),
    ],
)
def test_the_same_key_with_a_different_payload_is_a_conflict(
    client: httpx.Client, key: str, changed: dict[str, Any]
) -> None:
    original = submit(client, _step(idempotency_key=key))
    before = total_steps(client)

    response = client.post("/submit", json={**_step(idempotency_key=key), **changed})

    detail = assert_error(response, 409, "conflict", "/submit")
    assert "idempotency" in detail
    assert total_steps(client) == before
    assert client.get(f"/status/{original}").json()["payload"]["args"] == _step()["args"]


def test_different_keys_make_different_steps(client: httpx.Client, key: str) -> None:
    first = submit(client, _step(idempotency_key=key))
    second = submit(client, _step(idempotency_key=key + "-2"))

    assert first != second


def test_without_a_key_every_submit_is_a_new_step(client: httpx.Client) -> None:
    assert submit(client, _step()) != submit(client, _step())


async def test_concurrent_duplicate_rest_submits_make_one_step(
    pod: ServerProcess, client: httpx.Client, key: str
) -> None:
    before = total_steps(client)
    limits = httpx.Limits(max_connections=CONCURRENT_DUPLICATES)
    async with httpx.AsyncClient(base_url=pod.http_url, timeout=30, limits=limits) as aclient:
        responses = await asyncio.gather(
            *(
                aclient.post("/submit", json=_step(idempotency_key=key))
                for _ in range(CONCURRENT_DUPLICATES)
            )
        )

    codes = sorted(response.status_code for response in responses)
    assert codes == [200] * (CONCURRENT_DUPLICATES - 1) + [201], [r.text for r in responses]
    assert len({response.json()["step_id"] for response in responses}) == 1
    assert total_steps(client) == before + 1


def test_concurrent_duplicate_grpc_submits_make_one_step(
    pod: ServerProcess, client: httpx.Client, key: str
) -> None:
    before = total_steps(client)
    request = pb.SubmitStepRequest(type=UNHANDLED_TYPE, args={"order": 42}, idempotency_key=key)

    def submit_over_a_channel_of_its_own(_: int) -> str:
        with grpc.insecure_channel(pod.grpc_target) as channel:
            stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
            response: pb.SubmitStepResponse = stub.SubmitStep(request, timeout=30)
            return response.step_id

    with ThreadPoolExecutor(max_workers=CONCURRENT_DUPLICATES) as pool:
        step_ids = list(pool.map(submit_over_a_channel_of_its_own, range(CONCURRENT_DUPLICATES)))

    assert len(set(step_ids)) == 1
    assert total_steps(client) == before + 1


def test_grpc_deduplicates_by_field_and_by_metadata(
    stub: fleetq_pb2_grpc.FleetQServiceStub, key: str
) -> None:
    request = pb.SubmitStepRequest(type=UNHANDLED_TYPE, args={"order": 42})
    first = stub.SubmitStep(request, metadata=(("idempotency-key", key),))

    by_metadata = stub.SubmitStep(request, metadata=(("idempotency-key", key),))
    request.idempotency_key = key
    by_field = stub.SubmitStep(request)

    assert by_metadata.step_id == by_field.step_id == first.step_id
    assert stub.GetIdempotencyKey(pb.GetIdempotencyKeyRequest(step_id=first.step_id)) == (
        pb.GetIdempotencyKeyResponse(step_id=first.step_id, idempotency_key=key)
    )


def test_grpc_conflicting_payload_is_already_exists(
    stub: fleetq_pb2_grpc.FleetQServiceStub, key: str
) -> None:
    stub.SubmitStep(pb.SubmitStepRequest(type=UNHANDLED_TYPE, args={"n": 1}, idempotency_key=key))

    with pytest.raises(grpc.RpcError) as raised:
        stub.SubmitStep(
            pb.SubmitStepRequest(type=UNHANDLED_TYPE, args={"n": 2}, idempotency_key=key)
        )

    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "idempotency" in (raised.value.details() or "")


@pytest.mark.parametrize("header", ["", "k" * 256])
def test_an_invalid_idempotency_key_header_is_rejected(client: httpx.Client, header: str) -> None:
    before = total_steps(client)

    response = client.post("/submit", json=_step(), headers={"Idempotency-Key": header})

    assert "Idempotency-Key header" in assert_error(response, 400, "validation_error", "/submit")
    assert total_steps(client) == before


@pytest.mark.parametrize("how", ["body", "header"])
def test_the_idempotency_endpoint_returns_the_clients_key(
    client: httpx.Client, key: str, how: str
) -> None:
    if how == "body":
        step_id = submit(client, _step(idempotency_key=key))
    else:
        step_id = submit(client, _step(), headers={"Idempotency-Key": key})

    response = client.get(f"/idempotency/{step_id}")

    assert response.status_code == 200
    assert response.json() == {"step_id": step_id, "idempotency_key": key}


@pytest.fixture
def record_file() -> Iterator[Path]:
    """A file the server's `fail_once` handler appends to (the server runs on this machine)."""
    with tempfile.TemporaryDirectory(prefix="fleetq-keys-") as directory:
        yield Path(directory) / "keys.txt"


@pytest.mark.parametrize("client_key", [False, True], ids=["derived-key", "client-key"])
def test_handlers_get_the_same_key_on_every_retry(
    client: httpx.Client, key: str, record_file: Path, client_key: bool
) -> None:
    body: dict[str, Any] = {"type": "fail_once", "args": {"record_to": str(record_file)}}
    if client_key:
        body["idempotency_key"] = key
    step_id = submit(client, body)
    key_before = client.get(f"/idempotency/{step_id}").json()["idempotency_key"]

    status = wait_for_status(client, step_id, "completed")

    assert status["retry_count"] == 1
    assert status["result"] == {"retry_count": 1}
    key_after = client.get(f"/idempotency/{step_id}").json()["idempotency_key"]
    assert key_after == key_before
    assert record_file.read_text().splitlines() == [key_before, key_before]
    assert (key_before == key) is client_key
