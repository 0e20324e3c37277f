"""Errors a FLEET-Q client raises: one exception class per kind of failure, mapped from
gRPC status codes in one table."""

import grpc


class FleetQClientError(Exception):
    """Base class of every error the client raises; `code` is the gRPC status, if any."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class InvalidArgument(FleetQClientError):
    """The server rejected the request as malformed; the message names the field."""


class NotFound(FleetQClientError):
    """No such step."""


class Conflict(FleetQClientError):
    """E.g. an idempotency key reused for another payload, or recovery already running."""


class PermissionDenied(FleetQClientError):
    """E.g. recovery asked of a pod that is not the leader."""


class Unauthenticated(FleetQClientError):
    """A call without the token the pod requires (its API token, or for admin calls its
    admin token)."""


class Unavailable(FleetQClientError):
    """The pod is unreachable, or its database is."""


class Timeout(FleetQClientError):
    """A call's deadline passed, or a step did not finish within `wait()`'s timeout."""


_ERROR_FOR_CODE: dict[grpc.StatusCode, type[FleetQClientError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Timeout,
}


def error_from_rpc(error: grpc.RpcError) -> FleetQClientError:
    """The client exception for a failed call (sync and asyncio calls alike)."""
    code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
    details: str = error.details() or code.name  # type: ignore[attr-defined]
    return error_from_code(code, details)


def error_from_code(code: grpc.StatusCode, message: str) -> FleetQClientError:
    """The client exception for a status code, e.g. one step refused in a batch."""
    return _ERROR_FOR_CODE.get(code, FleetQClientError)(message or code.name, code)
