"""Submits whose args and metadata come as JSON text (`args_json`, `metadata_json`), as the
shipped clients send them, against a real pod: read back as a Struct's would be, refused
as clearly, and nothing written when refused."""

from __future__ import annotations

import secrets
from typing import Any

import grpc
import httpx
import orjson
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc
from google.protobuf import json_format

from tests.blackbox.contract import FAST_POD_ENV
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess

UNHANDLED_TYPE = "blackbox.unhandled"
Stub = fleetq_pb2_grpc.FleetQServiceStub


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env=FAST_POD_ENV)


def _args(stub: Stub, step_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A step's args and metadata as the status RPC's JSON shows them (integers as ints)."""
    payload = stub.GetStepStatus(pb.GetStepStatusRequest(step_id=step_id)).payload
    return _plain(payload.args), _plain(payload.metadata)


def _plain(struct: Any) -> dict[str, Any]:
    as_json = json_format.MessageToDict(struct)
    return {key: _ints(value) for key, value in as_json.items()}


def _ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_ints(item) for item in value]
    if isinstance(value, dict):
        return {key: _ints(item) for key, item in value.items()}
    return value


def _pending(stub: Stub) -> int:
    return stub.GetQueueStats(pb.GetQueueStatsRequest()).pending_steps


def test_a_step_sent_as_json_text_reads_back_as_one_sent_as_a_struct(stub: Stub) -> None:
    args = {"n": 5, "f": 2.5, "nested": {"list": [1, "x", True, None]}, "s": "é 1.0"}
    text = pb.SubmitStepRequest(
        type=UNHANDLED_TYPE, args_json=orjson.dumps(args).decode(), metadata_json='{"by":"me"}'
    )
    struct = pb.SubmitStepRequest(type=UNHANDLED_TYPE, args=args, metadata={"by": "me"})

    from_text, from_struct = stub.SubmitStep(text), stub.SubmitStep(struct)

    assert _args(stub, from_text.step_id) == _args(stub, from_struct.step_id)
    assert _args(stub, from_text.step_id) == (args, {"by": "me"})


def test_an_integral_double_in_text_is_the_integer_a_struct_makes_it(stub: Stub) -> None:
    key = f"text-{secrets.token_hex(4)}"
    first = stub.SubmitStep(
        pb.SubmitStepRequest(type=UNHANDLED_TYPE, args={"n": 1, "l": [2]}, idempotency_key=key)
    )

    # The same payload by its JSON value: a repeat of the key, not another payload.
    again = stub.SubmitStep(
        pb.SubmitStepRequest(
            type=UNHANDLED_TYPE, args_json='{"l": [2.0], "n": 1e0}', idempotency_key=key
        )
    )

    assert again.step_id == first.step_id and "already" in again.message


def test_a_large_batch_of_json_text_is_stored_whole(stub: Stub) -> None:
    steps = [
        pb.SubmitStepRequest(type=UNHANDLED_TYPE, args_json=f'{{"n":{n}}}') for n in range(300)
    ]
    response = stub.SubmitBatch(pb.SubmitBatchRequest(steps=steps))

    assert response.created_count == 300
    for n in (0, 150, 299):
        assert _args(stub, response.steps[n].step_id) == ({"n": n}, {})


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"args": {"n": 1}, "args_json": '{"n":1}'}, "args: give args or args_json, not both"),
        ({"args_json": '{"n":'}, "args_json: is not valid JSON"),
        ({"args_json": '{"n":NaN}'}, "args_json: is not valid JSON"),
        ({"args_json": "[1]"}, "args_json: must be a JSON object"),
        ({"args_json": "{}", "metadata_json": '"m"'}, "metadata_json: must be a JSON object"),
        ({"args_json": '{"a":' * 40 + "1" + "}" * 40}, "args_json: nests more than 31 levels"),
        ({"args_json": '{"l":[' + ",".join(["0"] * 10_001) + "]}"}, "at most 10000 JSON values"),
        ({"args_json": '{"s":"a\\u0000b"}'}, "args: strings and keys must not contain NUL"),
        ({"args_json": '{"n":9007199254740993}'}, "args.n: numbers must lie between"),
    ],
)
def test_json_text_that_cannot_be_stored_is_invalid_argument_and_writes_nothing(
    stub: Stub, fields: dict[str, Any], detail: str
) -> None:
    before = _pending(stub)

    with pytest.raises(grpc.RpcError) as raised:
        stub.SubmitStep(pb.SubmitStepRequest(type=UNHANDLED_TYPE, **fields))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert detail in (raised.value.details() or "")
    assert _pending(stub) == before


def test_a_bad_text_in_a_later_part_refuses_the_whole_batch(stub: Stub) -> None:
    before = _pending(stub)
    steps = [pb.SubmitStepRequest(type=UNHANDLED_TYPE, args_json="{}") for _ in range(300)]
    steps[250].args_json = "[]"

    with pytest.raises(grpc.RpcError) as raised:
        stub.SubmitBatch(pb.SubmitBatchRequest(steps=steps))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "steps[250].args_json: must be a JSON object" in (raised.value.details() or "")
    assert _pending(stub) == before


def test_rest_callers_may_send_json_text_too(client: httpx.Client, stub: Stub) -> None:
    response = client.post(
        "/submit", json={"type": UNHANDLED_TYPE, "args_json": '{"n": 2.0, "m": [3]}'}
    )

    assert response.status_code == 201, response.text
    assert _args(stub, response.json()["step_id"]) == ({"n": 2, "m": [3]}, {})
