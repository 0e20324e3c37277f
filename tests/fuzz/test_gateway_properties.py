"""Hypothesis properties of the gateway, in process (a fake servicer, no database).

- path templates match exactly the paths built from them, whatever the segment values;
- JSON -> proto -> JSON and proto -> JSON -> proto round-trip, and every response the
  encoder can produce conforms to the generated OpenAPI schema;
- no request, however malformed, raises past the gateway or earns a 500: it answers in
  the contract's shape.
"""

from __future__ import annotations

import asyncio
import json
import string
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import jsonschema
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc as pb_grpc
from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fleetq_common.json_values import dict_to_struct, python_to_value
from fleetq_server import errors, submission
from fleetq_server.api.interceptors import ErrorTranslationInterceptor, wrap_handlers
from fleetq_server.api.method_handlers import unary_handlers
from fleetq_server.api.proto_options import openapi_options
from fleetq_server.gateway import Gateway
from fleetq_server.gateway.asgi import Message as AsgiMessage
from fleetq_server.gateway.openapi import openapi_document
from fleetq_server.gateway.path_templates import (
    Literal,
    PathValueError,
    compile_template,
    split_path,
)
from fleetq_server.gateway.request_binding import RequestDecoder
from fleetq_server.gateway.response_encoding import dumps, encode_message, normalise_numbers
from fleetq_server.gateway.routes import MethodNotAllowed, RouteMatch, Router, routes_for_service

SERVICE = pb.DESCRIPTOR.services_by_name["FleetQService"]
ERROR_KEYS = {"detail", "error_type", "timestamp", "path"}
PROPERTY = settings(max_examples=200, derandomize=True, deadline=None, database=None)

# --------------------------------------------------------------------------- strategies

# JSON as a client may send it: finite numbers, integers a double holds exactly, shallow
# enough for the gateway's depth cap (32) even inside a request message.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: str(x) != "-0.0")
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
int32s = st.integers(-(2**31), 2**31 - 1)
# Anything at all, including NaN and Infinity, which json.dumps writes as bare words.
wild_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of `descriptor`, field by field (well-known types by their JSON form)."""
    message_class = GetMessageClass(descriptor)
    fields = {field.name: _field_values(field, depth) for field in descriptor.fields}

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = message_class()
        for field in descriptor.fields:
            value = draw(fields[field.name])
            if value is None:
                continue
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                target = getattr(message, field.name)
                for key, item in value.items():
                    if isinstance(item, Message):
                        target[key].CopyFrom(item)
                    else:
                        target[key] = item
            elif field.is_repeated:
                getattr(message, field.name).extend(value)
            elif isinstance(value, Message):
                getattr(message, field.name).CopyFrom(value)
            else:
                setattr(message, field.name, value)
        return message

    return build()


def _field_values(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    message_type = field.message_type
    if message_type is not None and message_type.GetOptions().map_entry:
        keys = _single_values(message_type.fields_by_name["key"], depth)
        values = _single_values(message_type.fields_by_name["value"], depth)
        return st.none() | st.dictionaries(keys, values, max_size=3)
    if field.is_repeated:
        return st.none() | st.lists(_single_values(field, depth), max_size=3)
    single = _single_values(field, depth)
    if message_type is not None and message_type.full_name == "google.protobuf.Value":
        return single  # unset and null both read as null: proto3 JSON cannot tell them apart
    return st.none() | single


def _single_values(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    message_type = field.message_type
    if message_type is None:
        return {
            FieldDescriptor.TYPE_STRING: st.text(max_size=20),
            FieldDescriptor.TYPE_INT32: int32s,
            FieldDescriptor.TYPE_BOOL: st.booleans(),
            FieldDescriptor.TYPE_DOUBLE: st.floats(allow_nan=False, allow_infinity=False).filter(
                lambda x: str(x) != "-0.0"
            ),
        }[field.type]
    name = message_type.full_name
    if name == "google.protobuf.Struct":
        return json_objects.map(dict_to_struct)
    if name == "google.protobuf.Value":
        return json_values.map(python_to_value)
    if name == "google.protobuf.Timestamp":
        return st.builds(
            timestamp_pb2.Timestamp,
            seconds=st.integers(0, 253402300799),
            nanos=st.integers(0, 999_999_999),
        )
    return messages(message_type, depth + 1)


# ------------------------------------------------------------------------ path templates

literals = st.text(string.ascii_letters + string.digits + "-._~", min_size=1, max_size=8)
variables = st.from_regex(r"[a-z_][a-z0-9_]{0,7}", fullmatch=True)
segment_values = st.text(min_size=1, max_size=12)


@st.composite
def templates_with_values(draw: st.DrawFn) -> tuple[str, str, dict[str, str]]:
    """A template, a raw path built from it, and the variables that path binds."""
    kinds = draw(st.lists(st.booleans(), min_size=1, max_size=5))
    names = draw(st.lists(variables, min_size=len(kinds), max_size=len(kinds), unique=True))
    template, path, bound = [], [], {}
    for is_variable, name in zip(kinds, names, strict=True):
        if is_variable:
            value = draw(segment_values)
            template.append(f"{{{name}}}")
            path.append(quote(value, safe=""))
            bound[name] = value
        else:
            literal = draw(literals)
            template.append(literal)
            path.append(literal)
    return "/" + "/".join(template), "/" + "/".join(path), bound


@PROPERTY
@given(templates_with_values())
def test_a_path_built_from_a_template_binds_exactly_its_values(
    case: tuple[str, str, dict[str, str]],
) -> None:
    template_text, path, bound = case
    template = compile_template(template_text)

    assert template.match(path) == bound
    assert template.match(path + "/extra") is None
    assert template.match(path.rsplit("/", 1)[0] or "/") is None


@PROPERTY
@given(templates_with_values(), st.integers(0, 4), literals)
def test_a_different_literal_never_matches(
    case: tuple[str, str, dict[str, str]], index: int, other: str
) -> None:
    template_text, path, _ = case
    template = compile_template(template_text)
    parts = path.split("/")
    position = 1 + index % (len(parts) - 1)
    if not isinstance(template.segments[position - 1], Literal) or parts[position] == other:
        return
    parts[position] = other

    assert template.match("/".join(parts)) is None


@PROPERTY
@given(st.binary(max_size=60))
@example(b"status/%FF")
@example(b"status/%C3")
def test_any_raw_path_resolves_or_is_refused_as_a_bad_path(raw: bytes) -> None:
    router = Router(routes_for_service(SERVICE))
    try:
        segments = split_path(b"/" + raw)
        resolved = router.resolve("GET", b"/" + raw)
    except PathValueError:
        return  # a segment that is not UTF-8: the gateway answers 400
    assert len(segments) == raw.count(b"/") + 1
    assert resolved is None or isinstance(resolved, RouteMatch | MethodNotAllowed)


# ------------------------------------------------------------------ JSON <-> proto mapping

SUBMIT = RequestDecoder(pb.SubmitStepRequest.DESCRIPTOR, "*", ())
DOCUMENT = openapi_document(SERVICE, title="t", version="1", **openapi_options(SERVICE))


@st.composite
def submit_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"type": draw(st.text(max_size=20)), "args": draw(json_objects)}
    for name, values in (
        ("metadata", json_objects),
        ("priority", int32s),
        ("max_retries", int32s),
        ("idempotency_key", st.text(max_size=20)),
        ("pending_expiry_seconds", st.floats(0, 31_536_000)),
        ("delay_seconds", st.floats(0, 31_622_400)),
        ("args_json", st.text(max_size=20)),
        ("metadata_json", st.text(max_size=20)),
    ):
        if draw(st.booleans()):
            body[name] = draw(values)
    return body


@PROPERTY
@given(submit_bodies())
def test_a_request_body_round_trips_through_the_message(body: dict[str, Any]) -> None:
    message = SUBMIT.decode(json.dumps(body).encode(), {}, b"")

    encoded = encode_message(message)

    assert encoded == {
        "type": body["type"],
        "args": normalise_numbers(body["args"]),
        "metadata": normalise_numbers(body.get("metadata")),
        "priority": body.get("priority", 0),
        "max_retries": body.get("max_retries"),
        "idempotency_key": body.get("idempotency_key"),
        "pending_expiry_seconds": body.get("pending_expiry_seconds"),
        "run_at": None,
        "delay_seconds": body.get("delay_seconds"),
        "args_json": body.get("args_json", ""),
        "metadata_json": body.get("metadata_json", ""),
    }


def validator(name: str) -> jsonschema.Draft202012Validator:
    root = {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]}
    return jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@pytest.mark.parametrize(
    "descriptor",
    [method.output_type for method in SERVICE.methods],
    ids=[method.output_type.name for method in SERVICE.methods],
)
def test_every_response_round_trips_and_matches_its_documented_schema(
    descriptor: Descriptor,
) -> None:
    decoder = RequestDecoder(descriptor, "*", ())
    schema = validator(descriptor.full_name)

    @PROPERTY
    @given(messages(descriptor))
    def round_trip(message: Message) -> None:
        encoded = encode_message(message)
        schema.validate(encoded)
        assert decoder.decode(dumps(encoded), {}, b"") == message

    round_trip()


# ------------------------------------------------------------- malformed input, in process


class CannedServicer(pb_grpc.FleetQServiceServicer):
    """Answers every RPC with a fixed, valid response: any 500 would be the gateway's."""

    async def GetHealth(self, request: Any, context: Any) -> pb.GetHealthResponse:
        return pb.GetHealthResponse(pod_id="p", status="healthy")

    async def SubmitStep(self, request: Any, context: Any) -> pb.SubmitStepResponse:
        if not request.type:
            raise errors.ValidationError("type: is required")
        await context.send_initial_metadata((("x-http-code", "201"),))
        return pb.SubmitStepResponse(step_id="step_1", status="submitted")

    async def SubmitBatch(self, request: Any, context: Any) -> pb.SubmitBatchResponse:
        return pb.SubmitBatchResponse(created_count=len(request.steps))

    async def GetStepStatus(self, request: Any, context: Any) -> pb.GetStepStatusResponse:
        raise errors.NotFoundError(f"Step {request.step_id} not found")

    async def GetIdempotencyKey(self, request: Any, context: Any) -> pb.GetIdempotencyKeyResponse:
        return pb.GetIdempotencyKeyResponse(step_id=request.step_id, idempotency_key="k")

    async def GetLeader(self, request: Any, context: Any) -> pb.GetLeaderResponse:
        return pb.GetLeaderResponse()

    async def GetQueueStats(self, request: Any, context: Any) -> pb.GetQueueStatsResponse:
        return pb.GetQueueStatsResponse(queue_depth_by_priority={0: 1})

    async def RunRecovery(self, request: Any, context: Any) -> pb.RunRecoveryResponse:
        return pb.RunRecoveryResponse(status="dry_run" if request.dry_run else "completed")

    async def GetThroughput(self, request: Any, context: Any) -> pb.GetThroughputResponse:
        return pb.GetThroughputResponse(minutes=[pb.ThroughputMinute(completed_steps=1)])

    async def ListRecoveryCycles(self, request: Any, context: Any) -> pb.ListRecoveryCyclesResponse:
        return pb.ListRecoveryCyclesResponse(next_page_token=request.page_token)

    async def ListSteps(self, request: Any, context: Any) -> pb.ListStepsResponse:
        return pb.ListStepsResponse(next_page_token=request.page_token)

    async def CancelStep(self, request: Any, context: Any) -> pb.CancelStepResponse:
        return pb.CancelStepResponse(step=pb.GetStepStatusResponse(step_id=request.step_id))

    async def RetryStep(self, request: Any, context: Any) -> pb.RetryStepResponse:
        return pb.RetryStepResponse(step=pb.GetStepStatusResponse(step_id=request.step_id))

    async def CreateSchedule(self, request: Any, context: Any) -> pb.CreateScheduleResponse:
        return pb.CreateScheduleResponse(schedule=pb.Schedule(name=request.name))

    async def ListSchedules(self, request: Any, context: Any) -> pb.ListSchedulesResponse:
        return pb.ListSchedulesResponse()

    async def GetSchedule(self, request: Any, context: Any) -> pb.GetScheduleResponse:
        raise errors.NotFoundError(f"Schedule {request.name} not found")

    async def UpdateSchedule(self, request: Any, context: Any) -> pb.UpdateScheduleResponse:
        return pb.UpdateScheduleResponse(schedule=pb.Schedule(name=request.name))

    async def DeleteSchedule(self, request: Any, context: Any) -> pb.DeleteScheduleResponse:
        return pb.DeleteScheduleResponse()

    async def PauseSchedule(self, request: Any, context: Any) -> pb.PauseScheduleResponse:
        return pb.PauseScheduleResponse(schedule=pb.Schedule(name=request.name, paused=True))

    async def ResumeSchedule(self, request: Any, context: Any) -> pb.ResumeScheduleResponse:
        return pb.ResumeScheduleResponse(schedule=pb.Schedule(name=request.name))

    async def SetTypeLimit(self, request: Any, context: Any) -> pb.SetTypeLimitResponse:
        return pb.SetTypeLimitResponse()

    async def ListTypeLimits(self, request: Any, context: Any) -> pb.ListTypeLimitsResponse:
        return pb.ListTypeLimitsResponse()

    async def DeleteTypeLimit(self, request: Any, context: Any) -> pb.DeleteTypeLimitResponse:
        raise errors.NotFoundError(f"Type {request.type} has no limit")

    async def ClaimSteps(self, request: Any, context: Any) -> pb.ClaimStepsResponse:
        return pb.ClaimStepsResponse()

    async def CompleteStep(self, request: Any, context: Any) -> pb.CompleteStepResponse:
        return pb.CompleteStepResponse(step_id=request.step_id, status="completed")

    async def FailStep(self, request: Any, context: Any) -> pb.FailStepResponse:
        return pb.FailStepResponse(step_id=request.step_id, status="failed")

    async def ExtendLease(self, request: Any, context: Any) -> pb.ExtendLeaseResponse:
        raise errors.NotFoundError(f"Step {request.step_id} not found")

    async def CompleteSteps(self, request: Any, context: Any) -> pb.CompleteStepsResponse:
        return pb.CompleteStepsResponse()

    async def ReleaseStep(self, request: Any, context: Any) -> pb.ReleaseStepResponse:
        return pb.ReleaseStepResponse(step_id=request.step_id, status="pending")


GATEWAY = Gateway(
    SERVICE,
    wrap_handlers(unary_handlers(SERVICE, CannedServicer()), [ErrorTranslationInterceptor()]),
    max_body_bytes=4096,
)


async def call(scope: dict[str, Any], chunks: list[bytes]) -> list[AsgiMessage]:
    """Drive the app like an ASGI server: the body in chunks, then (once the response is
    complete) a disconnect."""
    sent: list[AsgiMessage] = []
    pending = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    pending.append({"type": "http.request", "body": b"", "more_body": False})
    answered = asyncio.Event()

    async def receive() -> AsgiMessage:
        if pending:
            return pending.pop(0)
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: AsgiMessage) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            answered.set()

    await GATEWAY(scope, receive, send)
    return sent


segments = st.one_of(
    st.text(min_size=1, max_size=20).map(lambda text: quote(text, safe="").encode()),
    st.binary(max_size=20),  # raw bytes, possibly undecodable or with "/" and "%"
)
headers = st.lists(
    st.tuples(
        st.sampled_from([b"content-type", b"idempotency-key", b"content-length", b"x-a-bin"])
        | st.binary(max_size=10),
        st.binary(max_size=20),
    ),
    max_size=3,
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """An ASGI scope and body aimed at one route: mostly its method and path shape, with
    any segment values, query string, headers and body (bytes, JSON of any shape, or the
    request's own fields with values of any type)."""
    route = draw(st.sampled_from(GATEWAY.routes))
    method = draw(st.sampled_from([route.http_method] * 4 + ["GET", "POST", "PUT", "X-ODD"]))
    parts = [
        draw(segments) if "{" in part else part.encode()
        for part in route.template.template.split("/")[1:]
    ]
    if draw(st.booleans()):
        parts.append(draw(segments))  # one segment too many
    raw_path = b"/" + b"/".join(parts)
    fields = [field.name for field in route.method.input_type.fields]
    shaped = (
        st.fixed_dictionaries(
            {"type": st.text(max_size=10), "args": json_objects},
            optional={"priority": int32s | wild_json, "max_retries": int32s | wild_json},
        )
        if route.method.name == "SubmitStep"
        else st.dictionaries(st.sampled_from(fields), wild_json, max_size=4)
        if fields
        else st.just({})
    )
    body = draw(
        st.one_of(
            st.binary(max_size=200),
            wild_json.map(lambda value: json.dumps(value).encode()),
            shaped.map(lambda value: json.dumps(value).encode()),
            st.integers(30, 2000).map(lambda depth: b"[" * depth + b"]" * depth),
        )
    )
    scope = {
        "type": "http",
        "method": method,
        "path": unquote_to_bytes(raw_path).decode("latin-1"),
        "raw_path": raw_path,
        "query_string": draw(st.just(b"") | st.binary(max_size=30)),
        "headers": draw(headers),
        "client": ("127.0.0.1", 5000),
    }
    return scope, body


@PROPERTY
@given(requests(), st.integers(1, 3))
def test_no_request_raises_past_the_gateway_or_earns_a_500(
    request: tuple[dict[str, Any], bytes], split: int
) -> None:
    scope, body = request
    size = max(1, len(body) // split)
    chunks = [body[i : i + size] for i in range(0, len(body), size)]

    sent = asyncio.run(call(scope, chunks))

    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    status = sent[0]["status"]
    assert status in {200, 201, 400, 404, 405, 415}, sent
    response_headers = dict(sent[0]["headers"])
    assert response_headers[b"content-type"] == b"application/json"
    assert int(response_headers[b"content-length"]) == len(sent[1]["body"])
    answer = json.loads(sent[1]["body"])
    if status >= 400:
        assert set(answer) == ERROR_KEYS
        assert answer["path"] == scope["path"]


async def test_a_client_leaving_cancels_the_handler_and_gets_no_answer() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    class SlowServicer(CannedServicer):
        async def GetLeader(self, request: Any, context: Any) -> pb.GetLeaderResponse:
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return pb.GetLeaderResponse()

    gateway = Gateway(SERVICE, unary_handlers(SERVICE, SlowServicer()))
    sent: list[AsgiMessage] = []
    messages_in = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> AsgiMessage:
        if messages_in:
            return messages_in.pop(0)
        await started.wait()
        return {"type": "http.disconnect"}  # the client gives up mid-call

    async def send(message: AsgiMessage) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/admin/leader", "headers": []}
    await asyncio.wait_for(gateway(scope, receive, send), timeout=10)

    assert cancelled.is_set()
    assert sent == []


# ------------------------------------------------------------------- submission rules


@PROPERTY
@given(st.text(max_size=140))
@example("hello_world\n")
@example("a" * 129)
@example("")
def test_a_step_type_is_accepted_exactly_when_it_matches_the_documented_rule(type_: str) -> None:
    allowed = set(string.ascii_letters + string.digits + "_.-")
    expected = 1 <= len(type_) <= submission.MAX_TYPE_LENGTH and set(type_) <= allowed
    request = submission.SubmitRequest(
        type=type_, args={}, metadata=None, priority=0, max_retries=None, idempotency_key=None
    )

    try:
        submission.validate(request)
        accepted = True
    except errors.ValidationError:
        accepted = False

    assert accepted == expected
