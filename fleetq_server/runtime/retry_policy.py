"""How long a failed step waits before its next execution."""

import random
from dataclasses import dataclass

from fleetq_server.store.records import ClaimedStep, StepOutcome


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter between executions of a failing step."""

    base_s: float = 1.0
    max_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0 <= self.base_s <= self.max_s:
            raise ValueError("retry backoff: need 0 <= base <= max")

    def delay(self, retry_count: int) -> float:
        """Seconds before retry number `retry_count + 1`: base * 2^n, capped, with
        "equal jitter" (half fixed, half random) so retries of a burst spread out."""
        ceiling: float = min(self.max_s, self.base_s * 2.0 ** min(retry_count, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def failure(
        self,
        step: ClaimedStep,
        claim_pod_id: str,
        error: dict[str, str],
        *,
        retryable: bool = True,
        at_least_s: float = 0.0,
    ) -> StepOutcome:
        """The outcome of an execution that ended in `error`, with this step's backoff, or
        `at_least_s` when longer (used only if the store's retry-or-fail rule sends it
        back to pending, which a failure not `retryable` never is)."""
        backoff = max(self.delay(step.retry_count), at_least_s)
        return StepOutcome(step, claim_pod_id, error=error, backoff_s=backoff, retryable=retryable)
