"""The gRPC side of the contract against a real pod, through the generated stubs.

One pod serves the module; every test creates the steps it looks at and compares step counts
only before and after its own calls.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fleetq_server.gateway.json_parse import MAX_JSON_DEPTH
from tests.blackbox.contract import FAST_POD_ENV, STEP_ID
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

MAX_MESSAGE_BYTES = 1 << 20
UNHANDLED_TYPE = "blackbox.unhandled"

Stub = fleetq_pb2_grpc.FleetQServiceStub


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env=FAST_POD_ENV)


def _total_steps(stub: Stub) -> int:
    stats = stub.GetQueueStats(pb.GetQueueStatsRequest())
    return stats.pending_steps + stats.claimed_steps + stats.completed_steps + stats.failed_steps


def _rpc_error(call: Any, request: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, **kwargs)
    return raised.value


def _recent(stamp: Any) -> datetime:
    moment: datetime = stamp.ToDatetime(tzinfo=UTC)
    assert abs(datetime.now(UTC) - moment) < timedelta(minutes=5), moment
    return moment


def test_submit_status_and_idempotency_round_trip(stub: Stub) -> None:
    args = {"n": 5, "ratio": 0.5, "nested": {"list": [1, "x", True, None]}}
    submitted = stub.SubmitStep(
        pb.SubmitStepRequest(type=UNHANDLED_TYPE, args=args, metadata={"user": "alice"}, priority=9)
    )

    assert STEP_ID.fullmatch(submitted.step_id)
    assert submitted.status == "submitted"
    assert submitted.step_id in submitted.message

    status = stub.GetStepStatus(pb.GetStepStatusRequest(step_id=submitted.step_id))
    assert status.step_id == submitted.step_id
    assert status.status == "pending"
    assert not status.HasField("claimed_by")
    assert status.retry_count == 0
    assert status.priority == 9
    assert status.max_retries == 3
    assert _recent(status.last_update_ts) >= _recent(status.created_ts)
    assert status.payload.type == UNHANDLED_TYPE
    assert json_format.MessageToDict(status.payload.args) == {
        "n": 5.0,  # a Struct number is a double on the wire
        "ratio": 0.5,
        "nested": {"list": [1.0, "x", True, None]},
    }
    assert json_format.MessageToDict(status.payload.metadata) == {"user": "alice"}
    assert not status.HasField("result")
    assert not status.HasField("error")

    key = stub.GetIdempotencyKey(pb.GetIdempotencyKeyRequest(step_id=submitted.step_id))
    assert key.step_id == submitted.step_id
    assert key.idempotency_key
    again = stub.GetIdempotencyKey(pb.GetIdempotencyKeyRequest(step_id=submitted.step_id))
    assert again.idempotency_key == key.idempotency_key


def test_submit_defaults_metadata_priority_and_max_retries(stub: Stub) -> None:
    submitted = stub.SubmitStep(pb.SubmitStepRequest(type=UNHANDLED_TYPE, args={}))

    status = stub.GetStepStatus(pb.GetStepStatusRequest(step_id=submitted.step_id))

    assert status.priority == 0
    assert status.max_retries == 3
    assert status.payload.HasField("metadata")
    assert json_format.MessageToDict(status.payload.metadata) == {}


def test_max_retries_zero_is_kept_not_defaulted(stub: Stub) -> None:
    submitted = stub.SubmitStep(pb.SubmitStepRequest(type=UNHANDLED_TYPE, args={}, max_retries=0))

    status = stub.GetStepStatus(pb.GetStepStatusRequest(step_id=submitted.step_id))

    assert status.max_retries == 0


def test_a_completed_step_reports_its_result(stub: Stub) -> None:
    submitted = stub.SubmitStep(pb.SubmitStepRequest(type="hello_world", args={"message": "rpc"}))

    def completed() -> pb.GetStepStatusResponse | None:
        status = stub.GetStepStatus(pb.GetStepStatusRequest(step_id=submitted.step_id))
        return status if status.status == "completed" else None

    status = wait_until(completed, timeout=15, description="the step to complete")
    assert json_format.MessageToDict(status.result) == {
        "greeting": "Hello, rpc",
        "step_id": submitted.step_id,
    }
    assert not status.HasField("error")


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        pytest.param({"args": {}}, "type", id="type-missing"),
        pytest.param({"type": "a" * 129, "args": {}}, "type", id="type-129-characters"),
        pytest.param({"type": "has space", "args": {}}, "type", id="type-space"),
        pytest.param({"type": "ok"}, "args", id="args-missing"),
        pytest.param({"type": "ok", "args": {}, "priority": 1001}, "priority", id="priority"),
        pytest.param({"type": "ok", "args": {}, "max_retries": 101}, "max_retries", id="retries"),
        pytest.param(
            {"type": "ok", "args": {}, "max_retries": -1}, "max_retries", id="retries-neg"
        ),
        pytest.param(
            {"type": "ok", "args": {}, "idempotency_key": ""}, "idempotency_key", id="key"
        ),
    ],
)
def test_invalid_submit_is_invalid_argument_and_writes_nothing(
    stub: Stub, request_fields: dict[str, Any], field: str
) -> None:
    before = _total_steps(stub)

    error = _rpc_error(stub.SubmitStep, pb.SubmitStepRequest(**request_fields))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")
    assert _total_steps(stub) == before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("args", float("nan")),
        ("args", float("inf")),
        ("metadata", float("-inf")),
        ("args", "a\u0000b"),
        ("metadata", "\u0000"),
    ],
)
def test_json_that_cannot_be_stored_is_invalid_argument(stub: Stub, field: str, value: Any) -> None:
    before = _total_steps(stub)
    request = pb.SubmitStepRequest(type="ok", args={})
    getattr(request, field).update({"value": value})

    error = _rpc_error(stub.SubmitStep, request)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")
    assert _total_steps(stub) == before


@pytest.mark.parametrize("rpc", ["GetStepStatus", "GetIdempotencyKey"])
def test_an_unknown_step_is_not_found(stub: Stub, rpc: str) -> None:
    request_class = (
        pb.GetStepStatusRequest if rpc == "GetStepStatus" else pb.GetIdempotencyKeyRequest
    )
    step_id = "step_20240101120000_0000000000000000"

    error = _rpc_error(getattr(stub, rpc), request_class(step_id=step_id))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert step_id in (error.details() or "")


@pytest.mark.parametrize("step_id", ["", "s" * 500, "step\x00"])
def test_a_step_id_no_step_can_have_is_invalid_argument(stub: Stub, step_id: str) -> None:
    error = _rpc_error(stub.GetStepStatus, pb.GetStepStatusRequest(step_id=step_id))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "step_id" in (error.details() or "")


def test_a_message_over_one_mebibyte_is_resource_exhausted(stub: Stub) -> None:
    before = _total_steps(stub)
    request = pb.SubmitStepRequest(type="ok", args={"padding": "x" * MAX_MESSAGE_BYTES})

    error = _rpc_error(stub.SubmitStep, request)

    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _total_steps(stub) == before


def _length_delimited(field: int, payload: bytes) -> bytes:
    """One protobuf wire-format field of type LEN: tag and length as varints, then bytes."""
    header = (field << 3) | 2
    out = bytearray()
    for number in (header, len(payload)):
        while number >= 0x80:
            out.append(number & 0x7F | 0x80)
            number >>= 7
        out.append(number)
    return bytes(out) + payload


def _submit_nested(depth: int) -> bytes:
    """A SubmitStepRequest whose args nest `depth` objects, built on the wire: the Python
    protobuf library refuses to build one past its own depth limit."""
    args = b""
    for _ in range(depth):  # Struct{fields: {"a": Value{struct_value: args}}}
        args = _length_delimited(
            1, _length_delimited(1, b"a") + _length_delimited(2, _length_delimited(5, args))
        )
    return _length_delimited(1, b"hello_world") + _length_delimited(2, args)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_submit_nested(60), id="nested-too-deep"),
        pytest.param(b"\xff" * 4, id="corrupt"),
    ],
)
def test_a_request_that_cannot_be_decoded_is_invalid_argument_and_writes_nothing(
    stub: Stub, grpc_channel: grpc.Channel, body: bytes
) -> None:
    before = _total_steps(stub)
    call = grpc_channel.unary_unary("/fleetq.v1.FleetQService/SubmitStep")

    error = _rpc_error(call, body)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot be decoded" in (error.details() or "")
    assert _total_steps(stub) == before


def test_the_nesting_rest_accepts_is_decodable_over_grpc(grpc_channel: grpc.Channel) -> None:
    call = grpc_channel.unary_unary(
        "/fleetq.v1.FleetQService/SubmitStep",
        response_deserializer=pb.SubmitStepResponse.FromString,
    )

    response = call(_submit_nested(MAX_JSON_DEPTH - 1))  # args sit one level below the body

    assert STEP_ID.fullmatch(response.step_id)


def test_an_unknown_method_is_unimplemented(grpc_channel: grpc.Channel) -> None:
    call = grpc_channel.unary_unary("/fleetq.v1.FleetQService/NoSuchMethod")

    error = _rpc_error(call, b"")

    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def test_health_leader_queue_and_recovery_answer(stub: Stub) -> None:
    health = stub.GetHealth(pb.GetHealthRequest())
    assert health.status == "healthy" and health.pod_id and health.version
    assert health.max_capacity == 8 and health.is_leader

    leader = stub.GetLeader(pb.GetLeaderRequest())
    assert leader.current_leader == health.pod_id
    assert leader.active_pods == 1
    assert [pod.pod_id for pod in leader.election_details.eligible_pods] == [health.pod_id]

    stats = stub.GetQueueStats(pb.GetQueueStatsRequest())
    assert stats.current_leader == health.pod_id
    assert stats.pod_capacity[health.pod_id].max == 8

    recovery = stub.RunRecovery(pb.RunRecoveryRequest(dry_run=True))
    assert recovery.status == "dry_run"
    assert recovery.recovery_summary.cycle_id


def test_the_standard_health_service_reports_serving(grpc_channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(grpc_channel)

    for service in ("", "fleetq.v1.FleetQService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
