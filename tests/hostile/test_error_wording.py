"""Errors are worded in FLEET-Q's own terms: no Python codec, integer-conversion or
protobuf (upb) text reaches a client, over REST or gRPC."""

from __future__ import annotations

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from google.protobuf import struct_pb2

from tests.conftest import ServerFactory
from tests.hostile.expect import assert_validation_error
from tests.support.server_process import ServerProcess

# Phrases of the libraries underneath, as they appeared in 400 bodies.
LIBRARY_TEXT = (
    "codec",
    "surrogates not allowed",
    "Unpaired surrogate",
    "set_int_max_str_digits",
    "upb",
    "Error parsing message",
    "Failed to parse",
    "Wire format",
)
LONE_SURROGATE = "\\ud800"  # a JSON escape of half a UTF-16 pair


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory()


def assert_own_words(detail: str) -> None:
    for phrase in LIBRARY_TEXT:
        assert phrase not in detail, detail


@pytest.mark.parametrize(
    ("route", "body", "words"),
    [
        pytest.param(
            "/submit",
            '{"type":"t","args":{"s":"' + LONE_SURROGATE + '"}}',
            "Unicode",
            id="surrogate-in-args",
        ),
        pytest.param(
            "/submit", '{"type":"t","args":{"' + LONE_SURROGATE + '":1}}', "Unicode", id="key"
        ),
        pytest.param(
            "/submit", '{"type":"' + LONE_SURROGATE + '","args":{}}', "Unicode", id="type"
        ),
        pytest.param(
            "/submit",
            '{"type":"t","args":{},"idempotency_key":"x' + LONE_SURROGATE + '"}',
            "Unicode",
            id="idempotency-key",
        ),
        pytest.param(
            "/submit/batch",
            '{"steps":[{"type":"t","args":{"s":"' + LONE_SURROGATE + '"}}]}',
            "Unicode",
            id="batch",
        ),
        pytest.param(
            "/submit",
            '{"type":"t","args":{"n":' + "9" * 5000 + "}}",
            "number that is out of range",
            id="5000-digit-integer",
        ),
    ],
)
def test_rest_errors_quote_no_library_text(
    client: httpx.Client, route: str, body: str, words: str
) -> None:
    response = client.post(
        route, content=body.encode(), headers={"content-type": "application/json"}
    )

    assert_own_words(assert_validation_error(response, words))


def nested_submit(levels: int) -> bytes:
    """A SubmitStep whose args nest `levels` Structs deep (past protobuf's decode limit)."""
    root = struct_pb2.Struct()
    inner = root
    for _ in range(levels):
        inner = inner.fields["a"].struct_value
    request = pb.SubmitStepRequest(type="t")
    request.args.CopyFrom(root)
    return request.SerializeToString()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(
            nested_submit(60),
            id="nested-past-protobufs-depth-limit",
        ),
        pytest.param(b"\x0a\x02\xff\xfe", id="string-not-utf8"),
        pytest.param(b"\xff\xff\xff", id="corrupt"),
    ],
)
def test_grpc_decode_errors_quote_no_library_text(
    grpc_channel: grpc.Channel, payload: bytes
) -> None:
    submit = grpc_channel.unary_unary(
        "/fleetq.v1.FleetQService/SubmitStep",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )

    with pytest.raises(grpc.RpcError) as raised:
        submit(payload)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = raised.value.details() or ""
    assert "fleetq.v1.SubmitStepRequest" in details
    assert_own_words(details)
