"""What a valid fleet-wide limit per step type is (the claim enforces it: store/type_limits.py).
Pure functions, shared by the admin RPCs and the schedules file."""

import math
from dataclasses import replace

from fleetq_server import submission
from fleetq_server.errors import ValidationError
from fleetq_server.store.records import TypeLimit

# A bucket of more tokens than this is no rate limit at all; also keeps the column sane.
MAX_RATE_PER_SECOND = 1_000_000.0


def validated_limit(limit: TypeLimit) -> TypeLimit:
    """`limit` with its default burst (the rate rounded up, at least 1), or ValidationError
    naming the first invalid field."""
    submission.validate(
        submission.SubmitRequest(limit.step_type, {}, None, 0, None, idempotency_key=None)
    )
    if limit.max_concurrency is not None and limit.max_concurrency < 0:
        raise ValidationError("max_concurrency: must not be negative")
    rate = limit.rate_per_second
    if rate is not None and not (math.isfinite(rate) and 0 < rate <= MAX_RATE_PER_SECOND):
        raise ValidationError(
            f"rate_per_second: must be above 0 and at most {MAX_RATE_PER_SECOND:.0f}"
        )
    if limit.max_concurrency is None and rate is None:
        raise ValidationError("max_concurrency: give max_concurrency, rate_per_second or both")
    if limit.burst is not None and rate is None:
        raise ValidationError("burst: needs rate_per_second")
    if limit.burst is not None and limit.burst < 1:
        raise ValidationError("burst: must be at least 1")
    if rate is not None and limit.burst is None:
        return replace(limit, burst=max(1, math.ceil(rate)))
    return limit
