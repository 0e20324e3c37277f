"""When tracing is on, read from the standard OTEL_* variables only (no FLEETQ_* setting).

The SDK reads the rest itself: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, the sampler
(OTEL_TRACES_SAMPLER, _ARG), the batch processor (OTEL_BSP_*), the propagators
(OTEL_PROPAGATORS) and the exporter (OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS,
_TIMEOUT, _COMPRESSION).
"""

from collections.abc import Mapping

from fleetq_server.config import ConfigError

# The exporter installed with FLEET-Q; OTEL_EXPORTER_OTLP_PROTOCOL may name only it.
OTLP_PROTOCOL = "http/protobuf"
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
# The instrumentation name OTEL_PYTHON_DISABLED_INSTRUMENTATIONS uses for database spans.
DATABASE_INSTRUMENTATION = "asyncpg"


def tracing_wanted(environ: Mapping[str, str]) -> bool:
    """On when OTEL_TRACES_EXPORTER is `otlp`, or unset while an OTLP endpoint is set;
    off when it is `none`, when OTEL_SDK_DISABLED is true, and by default."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = [
        name.strip().lower()
        for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")
        if name.strip()
    ]
    unknown = [name for name in exporters if name not in ("otlp", "none")]
    if unknown:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={environ['OTEL_TRACES_EXPORTER']!r} is invalid: "
            "FLEET-Q exports traces with `otlp` (or `none`)"
        )
    wanted = "otlp" in exporters or (
        not exporters and any(environ.get(name) for name in _ENDPOINTS)
    )
    if wanted:
        _check_protocol(environ)
    return wanted


def _check_protocol(environ: Mapping[str, str]) -> None:
    for name in _PROTOCOLS:
        value = environ.get(name)
        if value:
            if value.strip().lower() != OTLP_PROTOCOL:
                raise ConfigError(
                    f"{name}={value!r} is invalid: FLEET-Q ships the OTLP exporter for "
                    f"{OTLP_PROTOCOL!r} only"
                )
            return


def database_spans_wanted(environ: Mapping[str, str]) -> bool:
    """Database spans, unless OTEL_PYTHON_DISABLED_INSTRUMENTATIONS lists asyncpg."""
    disabled = environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return DATABASE_INSTRUMENTATION not in {name.strip() for name in disabled.split(",")}
