"""OpenTelemetry tracing, configured only by the standard OTEL_* variables.

Off unless they ask for an OTLP exporter (`config.tracing_wanted`). When off, nothing of
OpenTelemetry is imported and nothing is wrapped around a call, a submit or a step: the pod
runs exactly the code it runs without this package. When on, `Tracing` (tracing.py) makes
a server span per RPC, stores the submit's traceparent with its step, a span per execution
attempt linked to it, and, unless OTEL_PYTHON_DISABLED_INSTRUMENTATIONS names asyncpg, a span
per database query.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING

from fleetq_server.telemetry.config import tracing_wanted

if TYPE_CHECKING:
    from fleetq_server.telemetry.tracing import Tracing

__all__ = ["tracing_from_environment"]


def tracing_from_environment(environ: Mapping[str, str], service_version: str) -> "Tracing | None":
    """Tracing as OTEL_* asks, exporting over OTLP/HTTP; None when off. Raises ConfigError
    naming the variable when a value cannot be honoured."""
    if not tracing_wanted(environ):
        return None
    from fleetq_server.telemetry.tracing import Tracing  # only now: off costs no import

    return Tracing.from_environment(environ, service_version)
