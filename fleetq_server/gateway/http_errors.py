"""The one table from gRPC status codes to HTTP statuses and the contract's error body.

gRPC codes are the truth; REST clients see what this table says. The gateway's own
failures (bad JSON, unknown paths, oversized bodies) are expressed as gRPC codes first so
that they go through the same table.
"""

from datetime import UTC, datetime
from typing import NamedTuple

import grpc


class HttpError(NamedTuple):
    """An HTTP status and the contract's machine-readable `error_type`."""

    status: int
    error_type: str


_CODE_TO_HTTP: dict[grpc.StatusCode, HttpError] = {
    grpc.StatusCode.INVALID_ARGUMENT: HttpError(400, "validation_error"),
    grpc.StatusCode.FAILED_PRECONDITION: HttpError(400, "validation_error"),
    grpc.StatusCode.NOT_FOUND: HttpError(404, "not_found"),
    grpc.StatusCode.PERMISSION_DENIED: HttpError(403, "permission_denied"),
    grpc.StatusCode.UNAUTHENTICATED: HttpError(401, "unauthenticated"),
    grpc.StatusCode.ABORTED: HttpError(409, "conflict"),
    grpc.StatusCode.ALREADY_EXISTS: HttpError(409, "conflict"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: HttpError(429, "resource_exhausted"),
    grpc.StatusCode.UNAVAILABLE: HttpError(500, "database_error"),
    grpc.StatusCode.UNIMPLEMENTED: HttpError(501, "not_implemented"),
    grpc.StatusCode.DEADLINE_EXCEEDED: HttpError(504, "timeout"),
}
_INTERNAL = HttpError(500, "internal_error")

# Not gRPC outcomes. The path exists but not for this HTTP method:
METHOD_NOT_ALLOWED = HttpError(405, "method_not_allowed")
# A body that is not JSON by its Content-Type:
UNSUPPORTED_MEDIA_TYPE = HttpError(415, "validation_error")
# The HTTP server's own limits (fleetq_server.http_server), before any route is known:
BAD_HTTP_REQUEST = HttpError(400, "validation_error")
REQUEST_TIMEOUT = HttpError(408, "timeout")
URI_TOO_LONG = HttpError(414, "validation_error")
HEADERS_TOO_LARGE = HttpError(431, "validation_error")
TOO_MANY_CONNECTIONS = HttpError(503, "resource_exhausted")


def http_error_for(code: grpc.StatusCode) -> HttpError:
    """The HTTP status and error_type a REST client sees for a gRPC status code."""
    return _CODE_TO_HTTP.get(code, _INTERNAL)


def error_types_for_status(status: int) -> tuple[str, ...]:
    """Every error_type this table can answer with `status`, sorted (for API documents)."""
    errors = [*_CODE_TO_HTTP.values(), _INTERNAL, METHOD_NOT_ALLOWED]
    return tuple(sorted({error.error_type for error in errors if error.status == status}))


def default_detail(code: grpc.StatusCode) -> str:
    """A readable detail for a status raised without one, e.g. "not found"."""
    phrase = code.value[1]
    return phrase if isinstance(phrase, str) and phrase else code.name.lower()


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds and `Z`, the contract's error timestamp."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def error_body(detail: str, error_type: str, path: str) -> dict[str, str]:
    """The contract's error body: exactly detail, error_type, timestamp and path."""
    return {
        "detail": detail,
        "error_type": error_type,
        "timestamp": format_timestamp(datetime.now(UTC)),
        "path": path,
    }
