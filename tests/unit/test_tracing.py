"""OpenTelemetry on the in-memory store, with the SDK's in-memory exporter: server spans over
both protocols, the submit's traceparent kept with its step, an attempt span linked to it,
database-free parts only (database spans: tests/blackbox/test_tracing_export.py)."""

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc
from grpc_health.v1._async import HealthServicer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from fleetq_server.config import ConfigError, Settings
from fleetq_server.errors import DatabaseUnavailableError
from fleetq_server.handlers import StepContext
from fleetq_server.runtime.pod import Pod
from fleetq_server.server import build_grpc_server, build_handlers, build_http_app
from fleetq_server.telemetry import tracing_from_environment
from fleetq_server.telemetry.config import database_spans_wanted, tracing_wanted
from fleetq_server.telemetry.tracing import Tracing
from tests.support.memory_store import MemoryStore
from tests.support.waiting import until
from tests.unit.runtime.helpers import registry

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


async def echo(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    if args.get("fail"):
        raise ValueError("asked to fail")
    return args


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Tracing:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider)


@pytest.fixture
async def pod(tracing: Tracing) -> AsyncIterator[Pod]:
    settings = Settings(pod_id="pod-a", poll_interval=0.05, retry_backoff_base=0.01)
    pod = Pod(settings, MemoryStore(), registry(echo=echo), tracing=tracing)
    await pod.start()
    yield pod
    await pod.shutdown(1.0)


@pytest.fixture
async def http(pod: Pod) -> AsyncIterator[httpx.AsyncClient]:
    handlers, protected = build_handlers(pod.settings, pod)
    app = build_http_app(pod.settings, handlers, pod.store, protected)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fleetq") as client:
        yield client


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


async def test_a_rest_submit_is_a_server_span_in_the_callers_trace_and_its_step_keeps_it(
    pod: Pod, http: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    response = await http.post(
        "/submit", json={"type": "echo", "args": {}}, headers={"traceparent": TRACEPARENT}
    )
    assert response.status_code == 201, response.text

    [span] = spans_named(exporter, "fleetq.v1.FleetQService/SubmitStep")
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    assert span.attributes is not None
    assert span.attributes["fleetq.transport"] == "http"
    assert span.attributes["rpc.grpc.status_code"] == 0
    stored = await pod.store.step_traceparent(response.json()["step_id"])  # type: ignore[attr-defined]
    assert stored is not None and stored.split("-")[1:3] == [
        TRACE_ID,
        format(span.context.span_id, "016x"),
    ]


async def test_each_attempt_is_a_span_linked_to_the_submit_with_step_attempt_and_pod(
    http: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    response = await http.post(
        "/submit",
        json={"type": "echo", "args": {"fail": True}, "max_retries": 1},
        headers={"traceparent": TRACEPARENT},
    )
    step_id = response.json()["step_id"]
    [submit] = spans_named(exporter, "fleetq.v1.FleetQService/SubmitStep")

    attempts = await until(
        lambda: (
            len(spans_named(exporter, "execute echo")) == 2
            and spans_named(exporter, "execute echo")
        ),
        description="two attempt spans",
    )

    assert [span.attributes["fleetq.step.attempt"] for span in attempts] == [1, 2]  # type: ignore[index]
    for span in attempts:
        assert span.attributes is not None
        assert span.attributes["fleetq.step.id"] == step_id
        assert span.attributes["fleetq.pod.id"].startswith("pod-a")  # type: ignore[union-attr]
        assert span.kind is SpanKind.CONSUMER
        assert span.context.trace_id != submit.context.trace_id  # a trace of its own...
        [link] = span.links
        assert link.context.trace_id == submit.context.trace_id  # ...linked to the submit
        assert link.context.span_id == submit.context.span_id
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"] == "ValueError"


async def test_an_attempt_runs_unlinked_when_its_traceparent_cannot_be_read(
    pod: Pod, http: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    async def unreadable(step_id: str) -> str | None:
        raise DatabaseUnavailableError("database unavailable")

    pod.store.step_traceparent = unreadable  # type: ignore[method-assign]
    response = await http.post("/submit", json={"type": "echo", "args": {}})

    [attempt] = await until(lambda: spans_named(exporter, "execute echo"), description="attempt")
    assert not attempt.links
    status = await until(
        lambda: pod.store.steps[response.json()["step_id"]].status == "completed",  # type: ignore[attr-defined]
        description="the step to complete",
    )
    assert status


async def test_an_error_answer_marks_the_server_span(
    http: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    response = await http.get("/status/step_20240101120000_00000000")
    assert response.status_code == 404

    [span] = spans_named(exporter, "fleetq.v1.FleetQService/GetStepStatus")
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert span.status.status_code is StatusCode.ERROR


async def test_a_stream_is_one_server_span_over_its_whole_life(
    http: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    step_id = (await http.post("/submit", json={"type": "echo", "args": {}})).json()["step_id"]
    await until(lambda: spans_named(exporter, "execute echo"), description="the attempt")

    watched = await http.get(f"/steps/{step_id}:watch", headers={"traceparent": TRACEPARENT})

    assert watched.status_code == 200 and '"completed"' in watched.text
    [span] = spans_named(exporter, "fleetq.v1.FleetQService/WatchStep")
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.attributes is not None and span.attributes["rpc.grpc.status_code"] == 0


async def test_a_grpc_call_is_a_server_span_too(pod: Pod, exporter: InMemorySpanExporter) -> None:
    handlers, _ = build_handlers(pod.settings, pod)
    server = build_grpc_server(pod.settings, handlers, HealthServicer())
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
            await stub.GetHealth(
                pb.GetHealthRequest(), metadata=(("traceparent", TRACEPARENT),), timeout=5
            )
    finally:
        await server.stop(None)

    [span] = spans_named(exporter, "fleetq.v1.FleetQService/GetHealth")
    assert span.attributes is not None and span.attributes["fleetq.transport"] == "grpc"
    assert format(span.context.trace_id, "032x") == TRACE_ID


async def test_without_tracing_nothing_is_wrapped_and_no_traceparent_is_stored() -> None:
    pod = Pod(Settings(pod_id="pod-b"), MemoryStore(), registry(echo=echo))
    handlers, _ = build_handlers(pod.settings, pod)
    app = build_http_app(pod.settings, handlers, pod.store, frozenset())  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fleetq"
    ) as client:
        response = await client.post(
            "/submit", json={"type": "echo", "args": {}}, headers={"traceparent": TRACEPARENT}
        )

    assert pod.executor._tracing is None
    assert await pod.store.step_traceparent(response.json()["step_id"]) is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "q"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_off_unless_otel_variables_ask_for_otlp(
    environ: dict[str, str], wanted: bool
) -> None:
    assert tracing_wanted(environ) is wanted
    if not wanted:
        assert tracing_from_environment(environ, "1") is None


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    ],
)
def test_values_it_cannot_honour_stop_start_up_naming_the_variable(
    environ: dict[str, str],
) -> None:
    with pytest.raises(ConfigError, match=next(iter(reversed(environ)))):
        tracing_wanted(environ)


def test_database_spans_are_off_when_asyncpg_instrumentation_is_disabled() -> None:
    assert database_spans_wanted({})
    assert not database_spans_wanted({"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "redis, asyncpg"})
