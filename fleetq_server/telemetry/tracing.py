"""The pod's tracer and the spans FLEET-Q makes. Imported only when tracing is on.

- A server span per RPC, over gRPC and REST alike (both run the same wrapped handlers), a
  child of the caller's `traceparent` header or metadata when it sends one.
- The submit's span context is stored with its step as a W3C traceparent; each execution
  attempt is a span of its own trace (it may run hours later, on another pod) linked to
  it, carrying the step id, its attempt and the pod.
- A span per database query made inside one of those spans (background loops' queries,
  heartbeats and claim polls, would be noise without a parent, so they make none).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from fleetq_server.telemetry.config import database_spans_wanted

INSTRUMENTATION = "fleetq"
DEFAULT_SERVICE_NAME = "fleetq"
# Longest db.statement recorded; FLEET-Q's statements are shorter, this bounds the rest.
MAX_STATEMENT_CHARS = 4096


class Tracing:
    """Makes FLEET-Q's spans with one provider; `shutdown` flushes what is still queued."""

    def __init__(self, provider: TracerProvider, *, database_spans: bool = True) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer(INSTRUMENTATION)
        self.database_spans = database_spans

    @classmethod
    def from_environment(cls, environ: Any, service_version: str) -> Tracing:
        """OTLP/HTTP export through a batch processor; the SDK reads its OTEL_* settings."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        resource = Resource.create({"service.version": service_version})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider, database_spans=database_spans_wanted(environ))

    def shutdown(self) -> None:
        """Export what is queued and stop (the pod's last act)."""
        self.provider.shutdown()

    # -- RPCs

    @contextmanager
    def server_span(
        self, method: str, metadata: Iterable[tuple[str, Any]], transport: str
    ) -> Iterator[Span]:
        """The span of one call of `method` (`/package.Service/Method`), current while it
        runs; its parent is whatever trace context the caller's metadata carries."""
        carrier = {
            key: value for key, value in metadata if isinstance(value, str)
        }  # binary metadata carries no trace context
        service, _, name = method.lstrip("/").partition("/")
        with self.tracer.start_as_current_span(
            f"{service}/{name}",
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": name,
                "fleetq.transport": transport,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span

    @staticmethod
    def end_rpc(span: Span, code: Any, details: str | None = None) -> None:
        """Record the call's gRPC status (a grpc.StatusCode) on its span."""
        value = code.value[0] if code is not None else 0
        span.set_attribute("rpc.grpc.status_code", value)
        if value != 0:
            span.set_status(Status(StatusCode.ERROR, details or code.name))

    @staticmethod
    def current_traceparent() -> str | None:
        """The current span context as a W3C traceparent (stored with a submitted step)."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier.get("traceparent")

    # -- step executions

    @contextmanager
    def attempt_span(
        self,
        *,
        step_id: str,
        step_type: str,
        attempt: int,
        retry_count: int,
        pod_id: str,
        traceparent: str | None,
    ) -> Iterator[Span]:
        """The span of one execution attempt: a trace of its own, linked to the submit's."""
        links = []
        if traceparent:
            submitted = trace.get_current_span(propagate.extract({"traceparent": traceparent}))
            if submitted.get_span_context().is_valid:
                links.append(Link(submitted.get_span_context()))
        with self.tracer.start_as_current_span(
            f"execute {step_type}",
            context=otel_context.Context(),  # a new trace, whatever task started it
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "fleetq.step.id": step_id,
                "fleetq.step.type": step_type,
                "fleetq.step.attempt": attempt,
                "fleetq.step.retry_count": retry_count,
                "fleetq.pod.id": pod_id,
                "messaging.system": "fleetq",
                "messaging.operation.type": "process",
                "messaging.message.id": step_id,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span

    @staticmethod
    def end_attempt(span: Span, error: dict[str, str] | None) -> None:
        """Record how the attempt ended: its error (type and message), or success."""
        if error is None:
            span.set_attribute("fleetq.step.outcome", "success")
            return
        span.set_attribute("fleetq.step.outcome", "error")
        span.set_attribute("error.type", error.get("type", "Error"))
        span.set_status(Status(StatusCode.ERROR, error.get("message")))

    # -- database

    def query_logger(self) -> Callable[[Any], None] | None:
        """An asyncpg query logger making a span per query inside a traced call; None when
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS turns database spans off."""
        if not self.database_spans:
            return None
        tracer = self.tracer

        def log_query(record: Any) -> None:
            # asyncpg calls this right after the query, in a copy of the querying task's
            # context: the current span is the caller's.
            if not trace.get_current_span().get_span_context().is_valid:
                return
            end = time.time_ns()
            statement = str(record.query)
            operation = statement.split(None, 1)[0].upper() if statement.strip() else "SQL"
            span = tracer.start_span(
                f"{operation} postgresql",
                kind=SpanKind.CLIENT,
                start_time=end - int(record.elapsed * 1e9),
                attributes={
                    "db.system.name": "postgresql",
                    "db.operation.name": operation,
                    "db.query.text": statement[:MAX_STATEMENT_CHARS],
                },
            )
            if record.exception is not None:
                span.set_status(Status(StatusCode.ERROR, type(record.exception).__name__))
            span.end(end_time=end)

        return log_query
