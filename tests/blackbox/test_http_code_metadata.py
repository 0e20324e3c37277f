"""Where a real pod puts `x-http-code` over gRPC: in the header metadata for a call an HTTP
gateway forwarded (grpc-gateway reads it there), in the trailers for a direct call (free),
and nowhere for a 200."""

from __future__ import annotations

import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from tests.blackbox.contract import FAST_POD_ENV
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess

UNHANDLED_TYPE = "blackbox.unhandled"
FORWARDED = (("x-forwarded-host", "gateway.example"),)


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env=FAST_POD_ENV)


def _submit(
    stub: fleetq_pb2_grpc.FleetQServiceStub, key: str, metadata: tuple[tuple[str, str], ...] = ()
) -> tuple[dict[str, str], dict[str, str]]:
    """Submit; the call's initial and trailing metadata."""
    request = pb.SubmitStepRequest(type=UNHANDLED_TYPE, args={}, idempotency_key=key)
    _, call = stub.SubmitStep.with_call(request, metadata=metadata)
    return dict(call.initial_metadata()), dict(call.trailing_metadata())  # type: ignore[arg-type]


def test_a_forwarded_call_gets_201_in_its_headers(stub: fleetq_pb2_grpc.FleetQServiceStub) -> None:
    headers, trailers = _submit(stub, "http-code-forwarded", FORWARDED)

    assert headers.get("x-http-code") == "201"
    assert "x-http-code" not in trailers


def test_a_direct_call_gets_201_in_its_trailers(stub: fleetq_pb2_grpc.FleetQServiceStub) -> None:
    headers, trailers = _submit(stub, "http-code-direct")

    assert trailers.get("x-http-code") == "201"
    assert "x-http-code" not in headers


def test_a_200_sends_no_code(stub: fleetq_pb2_grpc.FleetQServiceStub) -> None:
    _submit(stub, "http-code-repeat", FORWARDED)
    headers, trailers = _submit(stub, "http-code-repeat", FORWARDED)  # a repeat: 200

    assert "x-http-code" not in headers and "x-http-code" not in trailers
