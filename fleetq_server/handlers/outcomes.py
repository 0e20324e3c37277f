"""Exceptions a handler raises to steer its step's retry beyond "an error is retried
while retries are left"."""


class PermanentFailure(Exception):
    """Fail the step now, whatever retries it has left (the request itself is wrong)."""


class RetryAfter(Exception):
    """A retryable failure that must not be retried sooner than `seconds` from now (an
    HTTP Retry-After); the usual backoff applies when it is longer."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds
