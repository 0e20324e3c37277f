"""The domain's exception types.

Everything below the API layers raises these (the store translates asyncpg errors into
them); `fleetq_server.api.status_codes` maps each to one gRPC status code, and the
HTTP gateway maps gRPC codes to HTTP. Messages are safe to show to clients: never put
SQL, stack traces or secrets in them.
"""


class FleetQError(Exception):
    """Base class of every error a client may see."""


class ValidationError(FleetQError):
    """The request is malformed; the message names the offending field."""


class NotFoundError(FleetQError):
    """The requested entity does not exist."""


class ConflictError(FleetQError):
    """The request conflicts with current state (e.g. an idempotency key reused)."""


class RecoveryInProgressError(ConflictError):
    """Another pod holds the recovery lock."""


class StaleAttemptError(ConflictError):
    """A fenced write whose attempt no longer holds the step: stale, expired or ended."""


class PermissionDeniedError(FleetQError):
    """The caller may not do this here (e.g. recovery on a non-leader)."""


class UnauthenticatedError(FleetQError):
    """The caller did not present valid credentials."""


class DatabaseUnavailableError(FleetQError):
    """PostgreSQL is unreachable or failing; the request may be retried."""


class DataRejectedError(FleetQError):
    """PostgreSQL refused the data itself (too large, out of range, against a constraint):
    unlike an outage, sending the same data again cannot succeed."""
