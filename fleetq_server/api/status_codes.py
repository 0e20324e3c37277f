"""The one table from domain exceptions to gRPC status codes."""

import grpc

from fleetq_server import errors

# Most specific first: the first matching class wins.
_EXCEPTION_TO_CODE: tuple[tuple[type[errors.FleetQError], grpc.StatusCode], ...] = (
    (errors.ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.RecoveryInProgressError, grpc.StatusCode.ABORTED),
    (errors.StaleAttemptError, grpc.StatusCode.ABORTED),
    (errors.ConflictError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.DatabaseUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (errors.DataRejectedError, grpc.StatusCode.INVALID_ARGUMENT),
)


def status_code_for(error: errors.FleetQError) -> grpc.StatusCode:
    """The gRPC status code a client sees for `error`."""
    for exception_type, code in _EXCEPTION_TO_CODE:
        if isinstance(error, exception_type):
            return code
    return grpc.StatusCode.INTERNAL
