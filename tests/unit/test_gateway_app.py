"""The ASGI gateway end to end: real FleetQService descriptor, a fake in-process servicer."""

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc as pb_grpc
from google.protobuf import timestamp_pb2

from fleetq_server.api.interceptors import Behavior, UnaryInterceptor, wrap_handlers
from fleetq_server.api.method_handlers import generic_handler, unary_handlers
from fleetq_server.gateway import ROUTE_TEMPLATE_KEY, Gateway, GatewayServicerContext, RouteError
from fleetq_server.gateway.asgi import Message, Receive, Scope, Send

SERVICE = pb.DESCRIPTOR.services_by_name["FleetQService"]
ERROR_KEYS = {"detail", "error_type", "timestamp", "path"}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


class FakeServicer(pb_grpc.FleetQServiceServicer):
    """Records every call; stores submitted steps so status can echo them back."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, GatewayServicerContext]] = []
        self.steps: dict[str, pb.SubmitStepRequest] = {}
        self.unhealthy = False
        self.abort_code: grpc.StatusCode | None = None
        self.raise_error: Exception | None = None
        self.set_code_only: grpc.StatusCode | None = None
        self.wrong_response = False

    async def GetHealth(self, request: Any, context: Any) -> pb.GetHealthResponse:
        self.calls.append(("GetHealth", request, context))
        status = "healthy"
        if self.unhealthy:
            status = "unhealthy"
            context.set_trailing_metadata((("x-http-code", "503"),))
        return pb.GetHealthResponse(
            pod_id="pod-1", status=status, uptime_seconds=3600.0, max_capacity=8, version="1.0.0"
        )

    async def SubmitStep(self, request: Any, context: Any) -> pb.SubmitStepResponse:
        self.calls.append(("SubmitStep", request, context))
        step_id = f"step_{len(self.steps) + 1}"
        self.steps[step_id] = request
        await context.send_initial_metadata((("x-http-code", "201"), ("x-other", "kept-out")))
        return pb.SubmitStepResponse(
            step_id=step_id, status="submitted", message=f"Step {step_id} submitted successfully"
        )

    async def GetStepStatus(self, request: Any, context: Any) -> pb.GetStepStatusResponse:
        self.calls.append(("GetStepStatus", request, context))
        if request.step_id not in self.steps:
            await context.abort(grpc.StatusCode.NOT_FOUND, "Step not found")
        submitted = self.steps[request.step_id]
        created = timestamp_pb2.Timestamp(seconds=1704110400)
        return pb.GetStepStatusResponse(
            step_id=request.step_id,
            status="pending",
            created_ts=created,
            last_update_ts=created,
            priority=submitted.priority,
            max_retries=submitted.max_retries if submitted.HasField("max_retries") else 3,
            payload=pb.StepPayload(
                type=submitted.type,
                args=submitted.args if submitted.HasField("args") else None,
                metadata=submitted.metadata if submitted.HasField("metadata") else None,
            ),
        )

    async def GetIdempotencyKey(self, request: Any, context: Any) -> pb.GetIdempotencyKeyResponse:
        self.calls.append(("GetIdempotencyKey", request, context))
        return pb.GetIdempotencyKeyResponse(
            step_id=request.step_id, idempotency_key=f"idem_{request.step_id}"
        )

    async def GetLeader(self, request: Any, context: Any) -> Any:
        self.calls.append(("GetLeader", request, context))
        if self.wrong_response:
            return pb.GetHealthResponse()
        return pb.GetLeaderResponse(active_pods=0)

    async def GetQueueStats(self, request: Any, context: Any) -> pb.GetQueueStatsResponse:
        self.calls.append(("GetQueueStats", request, context))
        if self.set_code_only is not None:
            context.set_code(self.set_code_only)
            context.set_details("set without abort")
        return pb.GetQueueStatsResponse(
            pending_steps=25,
            queue_depth_by_priority={0: 15, 5: 2},
            pod_capacity={"pod-1": pb.PodCapacity(current=3, max=8)},
        )

    async def SubmitBatch(self, request: Any, context: Any) -> pb.SubmitBatchResponse:
        self.calls.append(("SubmitBatch", request, context))
        return pb.SubmitBatchResponse(created_count=len(request.steps))

    async def RunRecovery(self, request: Any, context: Any) -> pb.RunRecoveryResponse:
        self.calls.append(("RunRecovery", request, context))
        if self.raise_error is not None:
            raise self.raise_error
        if self.abort_code is not None:
            await context.abort(self.abort_code, f"aborted with {self.abort_code.name}")
        return pb.RunRecoveryResponse(
            status="dry_run" if request.dry_run else "completed",
            message="done",
            recovery_summary=pb.RecoverySummary(cycle_id="recovery_1", dead_pods=["p1"]),
        )


class RecordingInterceptor(UnaryInterceptor):
    """Remembers what it saw and in which order, then continues."""

    def __init__(self, name: str, log: list[tuple[str, str, dict[str, Any]]]) -> None:
        self.name = name
        self.log = log

    def wrap(self, method: str, inner: Behavior) -> Behavior:
        async def recorded(request: Any, context: Any) -> Any:
            self.log.append((self.name, method, dict(context.invocation_metadata())))
            return await inner(request, context)

        return recorded


class DenyingInterceptor(UnaryInterceptor):
    """Answers UNAUTHENTICATED without a bearer token, the way an auth interceptor would."""

    def wrap(self, method: str, inner: Behavior) -> Behavior:
        async def guarded(request: Any, context: Any) -> Any:
            if ("authorization", "Bearer good") not in context.invocation_metadata():
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or bad token")
            return await inner(request, context)

        return guarded


@pytest.fixture
def servicer() -> FakeServicer:
    return FakeServicer()


def make_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fleetq")


@pytest.fixture
async def client(servicer: FakeServicer) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(Gateway(SERVICE, unary_handlers(SERVICE, servicer))) as http:
        yield http


def assert_error(response: httpx.Response, status: int, error_type: str, path: str) -> str:
    """Check the contract's error body and return its detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["error_type"] == error_type
    assert body["path"] == path
    assert TIMESTAMP.fullmatch(body["timestamp"]), body["timestamp"]
    assert isinstance(body["detail"], str) and body["detail"]
    detail: str = body["detail"]
    return detail


# -------------------------------------------------------------------------------- routes


def test_every_annotated_rpc_gets_its_contract_route(servicer: FakeServicer) -> None:
    gateway = Gateway(SERVICE, unary_handlers(SERVICE, servicer))

    routes = {(r.http_method, r.template.template, r.method.name) for r in gateway.routes}

    assert routes == {
        ("GET", "/health", "GetHealth"),
        ("POST", "/submit", "SubmitStep"),
        ("POST", "/submit/batch", "SubmitBatch"),
        ("GET", "/status/{step_id}", "GetStepStatus"),
        ("GET", "/idempotency/{step_id}", "GetIdempotencyKey"),
        ("GET", "/admin/leader", "GetLeader"),
        ("GET", "/admin/queue", "GetQueueStats"),
        ("POST", "/admin/recovery/run", "RunRecovery"),
        ("GET", "/admin/throughput", "GetThroughput"),
        ("GET", "/admin/recovery/cycles", "ListRecoveryCycles"),
        ("GET", "/steps/{step_id}:watch", "WatchStep"),
        ("POST", "/admin/schedules", "CreateSchedule"),
        ("GET", "/admin/schedules", "ListSchedules"),
        ("GET", "/admin/schedules/{name}", "GetSchedule"),
        ("PATCH", "/admin/schedules/{name}", "UpdateSchedule"),
        ("DELETE", "/admin/schedules/{name}", "DeleteSchedule"),
        ("POST", "/admin/schedules/{name}:pause", "PauseSchedule"),
        ("POST", "/admin/schedules/{name}:resume", "ResumeSchedule"),
        ("PUT", "/admin/limits/{type}", "SetTypeLimit"),
        ("GET", "/admin/limits", "ListTypeLimits"),
        ("DELETE", "/admin/limits/{type}", "DeleteTypeLimit"),
        ("GET", "/steps", "ListSteps"),
        ("POST", "/steps/{step_id}:cancel", "CancelStep"),
        ("POST", "/steps/{step_id}:retry", "RetryStep"),
        ("POST", "/workers/claim", "ClaimSteps"),
        ("POST", "/steps/{step_id}:complete", "CompleteStep"),
        ("POST", "/steps/{step_id}:fail", "FailStep"),
        ("POST", "/steps/{step_id}:heartbeat", "ExtendLease"),
        ("POST", "/steps:batchComplete", "CompleteSteps"),
        ("POST", "/steps/{step_id}:release", "ReleaseStep"),
    }


@pytest.mark.parametrize(
    ("method", "path", "rpc"),
    [
        ("GET", "/health", "GetHealth"),
        ("POST", "/submit", "SubmitStep"),
        ("POST", "/submit/batch", "SubmitBatch"),
        ("GET", "/idempotency/step_9", "GetIdempotencyKey"),
        ("GET", "/admin/leader", "GetLeader"),
        ("GET", "/admin/queue", "GetQueueStats"),
        ("POST", "/admin/recovery/run", "RunRecovery"),
    ],
)
async def test_each_route_reaches_its_servicer_method(
    client: httpx.AsyncClient, servicer: FakeServicer, method: str, path: str, rpc: str
) -> None:
    response = await client.request(method, path)

    assert response.status_code in (200, 201), response.text
    assert [name for name, _, _ in servicer.calls] == [rpc]


def test_missing_handler_for_a_routed_method_stops_startup(servicer: FakeServicer) -> None:
    handlers = unary_handlers(SERVICE, servicer)
    del handlers["/fleetq.v1.FleetQService/GetLeader"]

    with pytest.raises(RouteError, match="GetLeader"):
        Gateway(SERVICE, handlers)


def test_generic_handler_serves_the_same_handler_objects(servicer: FakeServicer) -> None:
    handlers = unary_handlers(SERVICE, servicer)
    details = type("D", (), {"method": "/fleetq.v1.FleetQService/SubmitStep"})()

    assert (
        generic_handler(SERVICE, handlers).service(details)
        is handlers[  # type: ignore[arg-type]
            "/fleetq.v1.FleetQService/SubmitStep"
        ]
    )


# ------------------------------------------------------------------------------ success


async def test_path_variable_lands_in_the_request_field(
    client: httpx.AsyncClient, servicer: FakeServicer
) -> None:
    response = await client.get("/idempotency/step%2F1%20x")

    assert response.status_code == 200
    assert servicer.calls[0][1] == pb.GetIdempotencyKeyRequest(step_id="step/1 x")
    assert response.json() == {"step_id": "step/1 x", "idempotency_key": "idem_step/1 x"}


async def test_submit_answers_201_from_x_http_code_and_drops_the_header(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/submit", json={"type": "hello_world", "args": {"m": "hi"}})

    assert response.status_code == 201
    assert response.json() == {
        "step_id": "step_1",
        "status": "submitted",
        "message": "Step step_1 submitted successfully",
    }
    assert "x-http-code" not in response.headers
    assert "x-other" not in response.headers


async def test_x_http_code_in_trailing_metadata_sets_the_status_too(
    client: httpx.AsyncClient, servicer: FakeServicer
) -> None:
    servicer.unhealthy = True

    response = await client.get("/health")

    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert "x-http-code" not in response.headers


async def test_health_body_has_every_field_with_integral_doubles_as_integers(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content.startswith(
        b'{"pod_id":"pod-1","status":"healthy","uptime_seconds":3600,'
    )
    assert response.json() == {
        "pod_id": "pod-1",
        "status": "healthy",
        "uptime_seconds": 3600,
        "current_capacity": 0,
        "max_capacity": 8,
        "is_leader": False,
        "version": "1.0.0",
    }


async def test_struct_numbers_round_trip_keeping_integers_integers(
    client: httpx.AsyncClient,
) -> None:
    args = {"n": 5, "x": 2.5, "nested": {"list": [1, 2.25, "s", None, True]}}
    submitted = await client.post(
        "/submit", json={"type": "t", "args": args, "metadata": {"user": "alice", "k": 7}}
    )

    response = await client.get(f"/status/{submitted.json()['step_id']}")

    payload = response.json()["payload"]
    assert payload["args"] == args
    assert isinstance(payload["args"]["n"], int)
    assert b'"n":5,' in response.content and b'"x":2.5' in response.content
    assert payload["metadata"] == {"k": 7, "user": "alice"}


async def test_status_body_has_exact_fields_with_nulls_for_unset_ones(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/submit", json={"type": "t", "args": {}, "priority": 5})

    response = await client.get("/status/step_1")

    assert response.json() == {
        "step_id": "step_1",
        "status": "pending",
        "claimed_by": None,
        "last_update_ts": "2024-01-01T12:00:00Z",
        "retry_count": 0,
        "priority": 5,
        "created_ts": "2024-01-01T12:00:00Z",
        "max_retries": 3,
        "payload": {"type": "t", "args": {}, "metadata": None},
        "result": None,
        "error": None,
        "run_at": None,
        "attempts": [],
        "cancel_requested": False,
    }


async def test_leader_and_queue_bodies_render_nulls_maps_and_nested_messages(
    client: httpx.AsyncClient,
) -> None:
    leader = (await client.get("/admin/leader")).json()
    queue = (await client.get("/admin/queue")).json()

    assert leader == {
        "current_leader": None,
        "leader_birth_ts": None,
        "active_pods": 0,
        "last_election_check": None,
        "election_details": None,
    }
    assert queue["queue_depth_by_priority"] == {"0": 15, "5": 2}
    assert queue["pod_capacity"] == {"pod-1": {"current": 3, "max": 8}}
    assert queue["current_leader"] is None and queue["steps_by_type"] == {}


async def test_recovery_accepts_an_empty_body_and_a_json_body(
    client: httpx.AsyncClient, servicer: FakeServicer
) -> None:
    empty = await client.post("/admin/recovery/run")
    dry = await client.post("/admin/recovery/run", json={"dry_run": True})

    assert empty.json()["status"] == "completed"
    assert dry.json()["status"] == "dry_run"
    assert dry.json()["recovery_summary"]["dead_pods"] == ["p1"]
    assert servicer.calls[1][1] == pb.RunRecoveryRequest(dry_run=True)


async def test_request_headers_reach_the_servicer_as_lowercase_metadata(
    client: httpx.AsyncClient, servicer: FakeServicer
) -> None:
    await client.post(
        "/submit",
        json={"type": "t", "args": {}},
        headers={"Idempotency-Key": "abc", "Authorization": "Bearer t"},
    )

    context = servicer.calls[0][2]
    metadata = context.invocation_metadata()
    assert ("idempotency-key", "abc") in metadata
    assert ("authorization", "Bearer t") in metadata
    assert context.peer() == "ipv4:127.0.0.1:123"


# ------------------------------------------------------------------------------- errors


async def test_unknown_path_is_404_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")

    assert_error(response, 404, "not_found", "/nope")


async def test_wrong_method_on_a_known_path_is_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health")

    detail = assert_error(response, 405, "method_not_allowed", "/health")
    assert response.headers["allow"] == "GET, HEAD"
    assert "DELETE" in detail


async def test_head_answers_like_get_without_a_body(client: httpx.AsyncClient) -> None:
    get = await client.get("/health")
    head = await client.head("/health")

    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == "application/json"
    assert int(head.headers["content-length"]) > 0


async def test_get_on_submit_is_405_allowing_post(client: httpx.AsyncClient) -> None:
    response = await client.get("/submit")

    assert_error(response, 405, "method_not_allowed", "/submit")
    assert response.headers["allow"] == "POST"


async def test_servicer_not_found_becomes_404_with_its_detail(client: httpx.AsyncClient) -> None:
    response = await client.get("/status/step_missing")

    detail = assert_error(response, 404, "not_found", "/status/step_missing")
    assert detail == "Step not found"


@pytest.mark.parametrize(
    ("code", "status", "error_type"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400, "validation_error"),
        (grpc.StatusCode.FAILED_PRECONDITION, 400, "validation_error"),
        (grpc.StatusCode.NOT_FOUND, 404, "not_found"),
        (grpc.StatusCode.PERMISSION_DENIED, 403, "permission_denied"),
        (grpc.StatusCode.UNAUTHENTICATED, 401, "unauthenticated"),
        (grpc.StatusCode.ABORTED, 409, "conflict"),
        (grpc.StatusCode.ALREADY_EXISTS, 409, "conflict"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "resource_exhausted"),
        (grpc.StatusCode.UNAVAILABLE, 500, "database_error"),
        (grpc.StatusCode.UNIMPLEMENTED, 501, "not_implemented"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504, "timeout"),
        (grpc.StatusCode.INTERNAL, 500, "internal_error"),
        (grpc.StatusCode.UNKNOWN, 500, "internal_error"),
        (grpc.StatusCode.DATA_LOSS, 500, "internal_error"),
        (grpc.StatusCode.OUT_OF_RANGE, 500, "internal_error"),
    ],
)
async def test_aborts_map_to_http_through_the_one_table(
    client: httpx.AsyncClient,
    servicer: FakeServicer,
    code: grpc.StatusCode,
    status: int,
    error_type: str,
) -> None:
    servicer.abort_code = code

    response = await client.post("/admin/recovery/run", json={})

    detail = assert_error(response, status, error_type, "/admin/recovery/run")
    assert detail == f"aborted with {code.name}"


async def test_status_set_without_abort_is_still_an_error(
    client: httpx.AsyncClient, servicer: FakeServicer
) -> None:
    servicer.set_code_only = grpc.StatusCode.PERMISSION_DENIED

    response = await client.get("/admin/queue")

    detail = assert_error(response, 403, "permission_denied", "/admin/queue")
    assert detail == "set without abort"


async def test_unexpected_exception_is_logged_and_answered_with_a_generic_500(
    client: httpx.AsyncClient, servicer: FakeServicer, caplog: pytest.LogCaptureFixture
) -> None:
    servicer.raise_error = RuntimeError("SELECT secret FROM steps WHERE broken")

    with caplog.at_level(logging.ERROR, logger="fleetq_server.gateway.app"):
        response = await client.post("/admin/recovery/run", json={})

    detail = assert_error(response, 500, "internal_error", "/admin/recovery/run")
    assert "SELECT" not in response.text and "Traceback" not in response.text
    assert detail == "internal server error"
    assert any(r.exc_info and "RunRecovery" in r.getMessage() for r in caplog.records)


async def test_wrong_response_type_from_a_servicer_is_a_500(
    client: httpx.AsyncClient, servicer: FakeServicer
) -> None:
    servicer.wrong_response = True

    response = await client.get("/admin/leader")

    assert_error(response, 500, "internal_error", "/admin/leader")


async def test_unimplemented_servicer_method_is_501(servicer: FakeServicer) -> None:
    handlers = unary_handlers(SERVICE, servicer)
    # The generated base class: set_code(UNIMPLEMENTED), then raise NotImplementedError.
    base = pb_grpc.FleetQServiceServicer()  # type: ignore[abstract]
    handlers.update({k: v for k, v in unary_handlers(SERVICE, base).items() if "Leader" in k})

    async with make_client(Gateway(SERVICE, handlers)) as http:
        response = await http.get("/admin/leader")

    detail = assert_error(response, 501, "not_implemented", "/admin/leader")
    assert detail == "Method not implemented!"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"type": ', "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"type": "t", "bogus": 1}', 'unknown field "bogus"'),
        (b'{"type": "t", "args": "x"}', 'field "args" must be a JSON object'),
        (b'{"type": "t", "priority": "5"}', 'field "priority" must be an integer'),
        (b'{"type": "\xff"}', "not valid UTF-8"),
        (b'{"args": {"x": NaN}}', "only finite numbers"),
        (b'{"args": ' + b"[" * 200 + b"]" * 200 + b"}", "nests deeper than"),
    ],
)
async def test_undecodable_submit_bodies_are_400_validation_errors(
    client: httpx.AsyncClient, servicer: FakeServicer, content: bytes, expected: str
) -> None:
    response = await client.post(
        "/submit", content=content, headers={"content-type": "application/json"}
    )

    detail = assert_error(response, 400, "validation_error", "/submit")
    assert expected in detail
    assert servicer.calls == []


async def test_unknown_query_parameter_is_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", params={"verbose": "1"})

    detail = assert_error(response, 400, "validation_error", "/health")
    assert "verbose" in detail


async def test_undecodable_path_value_is_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/status/%FF")

    assert_error(response, 400, "validation_error", "/status/\ufffd")


async def test_body_over_the_default_limit_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/submit", content=b" " * ((1 << 20) + 1), headers={"content-type": "application/json"}
    )

    detail = assert_error(response, 400, "validation_error", "/submit")
    assert detail == "request body exceeds 1048576 bytes"
    assert response.headers["connection"] == "close"  # the unread rest ends the connection


# ------------------------------------------------------------- raw ASGI: body, mounts


async def call_asgi(app: Any, scope: Scope, messages: list[Any]) -> tuple[list[Message], int]:
    """Run the app; return what it sent and how many messages it received."""
    sent: list[Message] = []
    received = 0

    async def receive() -> Message:
        nonlocal received
        received += 1
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent, received


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers or [],
        "client": ("10.0.0.1", 5000),
    }


async def test_body_reading_stops_at_the_limit_without_draining_the_stream(
    servicer: FakeServicer,
) -> None:
    gateway = Gateway(SERVICE, unary_handlers(SERVICE, servicer), max_body_bytes=10)
    chunks = [{"type": "http.request", "body": b"x" * 8, "more_body": True} for _ in range(50)]

    sent, received = await call_asgi(gateway, http_scope("POST", "/submit"), chunks)

    assert received == 2
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["detail"] == "request body exceeds 10 bytes"
    assert servicer.calls == []


async def test_declared_oversized_body_is_refused_before_reading(servicer: FakeServicer) -> None:
    gateway = Gateway(SERVICE, unary_handlers(SERVICE, servicer), max_body_bytes=10)
    scope = http_scope(
        "POST", "/submit", [(b"content-type", b"application/json"), (b"content-length", b"11")]
    )

    sent, received = await call_asgi(gateway, scope, [])

    assert received == 0
    assert sent[0]["status"] == 400


async def test_body_split_over_chunks_is_reassembled(servicer: FakeServicer) -> None:
    gateway = Gateway(SERVICE, unary_handlers(SERVICE, servicer))
    chunks = [
        {"type": "http.request", "body": b'{"type": "t", ', "more_body": True},
        {"type": "http.request", "body": b'"args": {"n": 1}}', "more_body": False},
    ]

    sent, _ = await call_asgi(gateway, http_scope("POST", "/submit"), chunks)

    assert sent[0]["status"] == 201
    assert servicer.steps["step_1"].type == "t"


async def test_client_disconnect_while_reading_sends_nothing(servicer: FakeServicer) -> None:
    gateway = Gateway(SERVICE, unary_handlers(SERVICE, servicer))

    sent, _ = await call_asgi(gateway, http_scope("POST", "/submit"), [])

    assert sent == []
    assert servicer.calls == []


async def test_mounted_app_serves_its_exact_path(servicer: FakeServicer) -> None:
    async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"fleetq_up 1\n"})

    gateway = Gateway(SERVICE, unary_handlers(SERVICE, servicer), mounts={"/metrics": metrics})
    async with make_client(gateway) as http:
        mounted = await http.get("/metrics")
        below = await http.get("/metrics/x")

    assert mounted.status_code == 200 and mounted.text == "fleetq_up 1\n"
    assert below.status_code == 404


async def test_lifespan_startup_and_shutdown_are_acknowledged(servicer: FakeServicer) -> None:
    gateway = Gateway(SERVICE, unary_handlers(SERVICE, servicer))

    sent, _ = await call_asgi(
        gateway,
        {"type": "lifespan"},
        [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}],
    )

    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


# ---------------------------------------------------------------------- wrapped handlers


async def test_wrapped_handlers_run_the_chain_outermost_first(servicer: FakeServicer) -> None:
    log: list[tuple[str, str, dict[str, Any]]] = []
    interceptors = [RecordingInterceptor("outer", log), RecordingInterceptor("inner", log)]
    gateway = Gateway(SERVICE, wrap_handlers(unary_handlers(SERVICE, servicer), interceptors))

    async with make_client(gateway) as http:
        response = await http.get("/status/step_1", headers={"Authorization": "Bearer t"})

    assert response.status_code == 404
    assert [(name, method) for name, method, _ in log] == [
        ("outer", "/fleetq.v1.FleetQService/GetStepStatus"),
        ("inner", "/fleetq.v1.FleetQService/GetStepStatus"),
    ]
    assert log[0][2]["authorization"] == "Bearer t"


async def test_a_wrapper_can_refuse_a_call_before_the_servicer(servicer: FakeServicer) -> None:
    handlers = wrap_handlers(unary_handlers(SERVICE, servicer), [DenyingInterceptor()])
    gateway = Gateway(SERVICE, handlers)

    async with make_client(gateway) as http:
        denied = await http.get("/admin/queue")
        allowed = await http.get("/admin/queue", headers={"Authorization": "Bearer good"})

    detail = assert_error(denied, 401, "unauthenticated", "/admin/queue")
    assert detail == "missing or bad token"
    assert allowed.status_code == 200
    assert [name for name, _, _ in servicer.calls] == ["GetQueueStats"]


async def test_a_route_served_by_a_streaming_handler_is_501(servicer: FakeServicer) -> None:
    handlers = unary_handlers(SERVICE, servicer)
    handlers["/fleetq.v1.FleetQService/GetHealth"] = grpc.unary_stream_rpc_method_handler(
        lambda request, context: iter(())
    )

    async with make_client(Gateway(SERVICE, handlers)) as http:
        response = await http.get("/health")

    assert_error(response, 501, "not_implemented", "/health")
    assert servicer.calls == []


async def test_a_gateway_bug_still_answers_a_contract_shaped_500(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any) -> Any:
        raise KeyError("internal detail")

    monkeypatch.setattr("fleetq_server.gateway.request_binding.RequestDecoder.decode", broken)

    with caplog.at_level(logging.ERROR, logger="fleetq_server.gateway.app"):
        response = await client.get("/health")

    detail = assert_error(response, 500, "internal_error", "/health")
    assert "internal detail" not in detail
    assert any(record.exc_info for record in caplog.records)


# ------------------------------------------------------------------ the route in the scope


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/status/step_1", "/status/{step_id}"),
        ("HEAD", "/status/step_1", "/status/{step_id}"),
        ("DELETE", "/status/step_1", "/status/{step_id}"),  # 405: the path's template
        ("GET", "/extra", "/extra"),  # a mount labels itself
        ("GET", "/no/such/path", None),
        ("GET", "/status/%FF", None),  # not UTF-8: nothing matched
    ],
)
async def test_the_gateway_records_the_matched_route_in_the_scope(
    servicer: FakeServicer, method: str, path: str, expected: str | None
) -> None:
    seen: list[Scope] = []

    async def mounted(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    gateway = Gateway(SERVICE, unary_handlers(SERVICE, servicer), mounts={"/extra": mounted})

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await gateway(scope, receive, send)

    async with make_client(recording) as http:
        await http.request(method, path)

    assert seen[0].get(ROUTE_TEMPLATE_KEY) == expected
