"""OpenTelemetry from a real pod to a real OTLP/HTTP receiver on a local port, which decodes
each export request (ExportTraceServiceRequest) as a collector would."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.blackbox.contract import FAST_POD_ENV, submit, wait_for_status
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    links: list[tuple[str, str]]  # (trace id, span id)
    service_name: str


@dataclass
class OtlpReceiver:
    """What the receiver decoded, and the paths it was sent to."""

    url: str
    spans: list[ReceivedSpan] = field(default_factory=list)
    paths: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def named(self, name: str) -> list[ReceivedSpan]:
        with self.lock:
            return [span for span in self.spans if span.name == name]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _decode(body: bytes, receiver: OtlpReceiver) -> None:
    request = ExportTraceServiceRequest.FromString(body)
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                received = ReceivedSpan(
                    name=span.name,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    kind=span.kind,
                    attributes={a.key: _value(a.value) for a in span.attributes},
                    links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                    service_name=str(resource.get("service.name")),
                )
                with receiver.lock:
                    receiver.spans.append(received)


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP (protobuf) trace receiver on a free local port."""
    state = OtlpReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            with state.lock:
                state.paths.add(self.path)
            _decode(body, state)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory, receiver: OtlpReceiver) -> ServerProcess:
    return module_server_factory(
        env={
            **FAST_POD_ENV,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_SERVICE_NAME": "fleetq-under-test",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
    )


def test_a_traced_submit_its_attempt_and_its_queries_reach_the_receiver(
    client: httpx.Client, receiver: OtlpReceiver
) -> None:
    step_id = submit(
        client,
        {"type": "hello_world", "args": {"message": "otel"}},
        headers={"traceparent": TRACEPARENT},
    )
    wait_for_status(client, step_id, "completed")

    submits = wait_until(
        lambda: [
            s
            for s in receiver.named("fleetq.v1.FleetQService/SubmitStep")
            if s.trace_id == TRACE_ID
        ],
        timeout=15,
        description="the submit's server span",
    )
    [attempt] = wait_until(
        lambda: [
            s
            for s in receiver.named("execute hello_world")
            if s.attributes.get("fleetq.step.id") == step_id
        ],
        timeout=15,
        description="the attempt's span",
    )
    [submit_span] = submits
    assert submit_span.parent_span_id == "b7ad6b7169203331"
    assert submit_span.attributes["fleetq.transport"] == "http"
    assert submit_span.service_name == "fleetq-under-test"
    assert attempt.links == [(TRACE_ID, submit_span.span_id)]
    assert attempt.trace_id != TRACE_ID
    assert attempt.attributes["fleetq.step.attempt"] == 1
    assert attempt.attributes["fleetq.pod.id"] == client.get("/health").json()["pod_id"]
    queries = wait_until(
        lambda: [
            s
            for s in receiver.spans
            if s.trace_id == TRACE_ID and s.attributes.get("db.system.name") == "postgresql"
        ],
        timeout=15,
        description="a database span in the submit's trace",
    )
    assert any("fleetq_steps" in str(s.attributes["db.query.text"]) for s in queries)
    assert receiver.paths == {"/v1/traces"}


def test_a_grpc_call_is_a_server_span_in_the_callers_trace(
    stub: fleetq_pb2_grpc.FleetQServiceStub, receiver: OtlpReceiver
) -> None:
    traceparent = "00-11111111111111111111111111111111-2222222222222222-01"
    try:
        stub.GetStepStatus(
            pb.GetStepStatusRequest(step_id="step_20240101120000_00000000"),
            metadata=(("traceparent", traceparent),),
        )
    except grpc.RpcError as exc:
        assert exc.code() is grpc.StatusCode.NOT_FOUND

    [span] = wait_until(
        lambda: [
            s
            for s in receiver.named("fleetq.v1.FleetQService/GetStepStatus")
            if s.trace_id == "11111111111111111111111111111111"
        ],
        timeout=15,
        description="the gRPC call's server span",
    )
    assert span.attributes["fleetq.transport"] == "grpc"
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]


@pytest.mark.parametrize("count", [2, 64], ids=["inserted", "copied"])
def test_a_traced_batch_links_each_steps_attempt_to_the_batch_span(
    client: httpx.Client, receiver: OtlpReceiver, count: int
) -> None:
    trace_id = f"{count:032x}"
    steps = [{"type": "hello_world", "args": {"message": f"batch {n}"}} for n in range(count)]
    response = client.post(
        "/submit/batch",
        json={"steps": steps},
        headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
    )
    assert response.status_code == 201, response.text
    step_ids = [step["step_id"] for step in response.json()["steps"]]
    [batch_span] = wait_until(
        lambda: [
            s
            for s in receiver.named("fleetq.v1.FleetQService/SubmitBatch")
            if s.trace_id == trace_id
        ],
        timeout=15,
        description="the batch's server span",
    )
    for step_id in (step_ids[0], step_ids[-1]):
        wait_for_status(client, step_id, "completed", timeout=30)
        [attempt] = wait_until(
            lambda step_id=step_id: [
                s
                for s in receiver.named("execute hello_world")
                if s.attributes.get("fleetq.step.id") == step_id
            ],
            timeout=15,
            description="the attempt's span",
        )
        assert attempt.links == [(trace_id, batch_span.span_id)]
