"""Records executions' outcomes: group-committed, fenced, retried while the database is
away (telling a lost answer from a lost claim), and a refused outcome turned into a failure
of its own step."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from fleetq_common.coalescer import Coalescer
from fleetq_server import errors, metrics
from fleetq_server.runtime.claims_ahead import LINGER_TURNS, WRITES_IN_FLIGHT
from fleetq_server.runtime.retry_policy import RetryPolicy
from fleetq_server.store.ports import OutcomePort
from fleetq_server.store.records import StepOutcome

# Writes a batch of outcomes; per outcome, the step's new status (None: fenced out).
OutcomeFlush = Callable[[Sequence[StepOutcome]], Awaitable[list[str | None]]]
# Recorded instead of an outcome (result or error) that the database refuses to store.
_REJECTED_ERROR = {
    "type": "OutcomeRejected",
    "message": "the database refused the step's outcome (too large, out of range or against"
    " a constraint)",
}
# Outcome writes retry while the database is unavailable, backing off up to this.
_WRITE_RETRY_MAX_S = 5.0
# Outcomes finishing together are written in one UPDATE of at most this many rows.
_MAX_OUTCOMES_PER_WRITE = 500
# The step counter a recorded outcome moves, by the step's new status (None: fenced out).
_OUTCOME_COUNTERS = {
    "completed": metrics.STEPS_COMPLETED,
    "pending": metrics.STEPS_RETRIED,
    "failed": metrics.STEPS_FAILED,
    "cancelled": metrics.STEPS_CANCELLED,
    None: metrics.STEPS_FENCED,
}


class OutcomeCompleter:
    """Writes outcomes through one `Coalescer`, so those ready together share an UPDATE."""

    def __init__(
        self, store: OutcomePort, retry_policy: RetryPolicy, flush: OutcomeFlush | None = None
    ) -> None:
        """`flush` writes a batch of outcomes (default: `store.step_finish_many`). Such a
        flush of its own is an outcome write that claims (`ClaimLoop.finish_and_claim`):
        two may be under way at once, each gathering the outcomes of a burst (claims_ahead
        WRITES_IN_FLIGHT, LINGER_TURNS)."""
        claims = flush is not None
        self._store = store
        self._retry_policy = retry_policy
        # An outcome the database refuses fails alone, not with the batch it shared.
        self._outcomes: Coalescer[StepOutcome, str | None] = Coalescer(
            flush or store.step_finish_many,
            max_batch=_MAX_OUTCOMES_PER_WRITE,
            isolate=(errors.DataRejectedError,),
            max_in_flight=WRITES_IN_FLIGHT if claims else 1,
            linger_turns=LINGER_TURNS if claims else 0,
        )

    async def complete(
        self, outcome: StepOutcome, step_log: logging.LoggerAdapter[logging.Logger]
    ) -> str | None:
        """Record the outcome, retrying while the database is unavailable; returns the
        step's new status (None: fenced out).

        An outcome the database refuses (a result too large for jsonb, say) is recorded as
        a failure instead, which spends a retry like any other: it would be refused for
        ever, and the step would stay claimed. A write that matches no row means the claim
        was taken away (the pod was presumed dead and the step requeued): the newer
        execution wins, ours is dropped.

        A write whose answer was lost may have committed. Its retry is harmless (the fence
        matches no row once the step is no longer claimed under this token), and then
        reads the step to tell our own earlier write from a lost claim.
        """
        pause = 0.1
        unanswered = False
        while True:
            try:
                new_status = await self._outcomes.submit(outcome)
                if new_status is None and unanswered:
                    new_status = await self._recorded_status(outcome)
            except (errors.DatabaseUnavailableError, errors.DataRejectedError) as exc:
                refused = isinstance(exc, errors.DataRejectedError)
                unanswered = unanswered or not refused
                if refused and outcome.error != _REJECTED_ERROR:
                    step_log.error("the database refused the step's outcome; recording a failure")
                    outcome = self._retry_policy.failure(
                        outcome.step, outcome.pod_id, _REJECTED_ERROR
                    )
                    continue
                # Unavailable, or refusing even the bare failure: wait and try again.
                step_log.warning("outcome not recorded (%s); retrying in %.1fs", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, _WRITE_RETRY_MAX_S)
                continue
            if new_status is None:
                step_log.warning("outcome fenced out: the step was reassigned")
            else:
                step_log.info("attempt %d recorded: step now %s", outcome.step.attempt, new_status)
            metrics.child(_OUTCOME_COUNTERS[new_status], outcome.step.type).inc()
            return new_status

    async def _recorded_status(self, outcome: StepOutcome) -> str | None:
        """The status `outcome` gave its step when an earlier write of it committed but its
        answer was lost; None when the step shows no such write (the claim was lost).

        Only this claim's holder ends its attempt, and recovery's own failure (`PodLost`)
        differs from a handler's, so the stored attempt, holder and error tell it apart.
        """
        try:
            step = await self._store.step_get(outcome.step.step_id)
        except errors.NotFoundError:
            return None
        if step.attempt != outcome.step.attempt:
            return None
        if outcome.error is None:
            ours = step.status == "completed" and step.claimed_by == outcome.pod_id
        else:
            ours = (
                step.status in ("pending", "failed")
                and step.claimed_by in (None, outcome.pod_id)
                and step.error == outcome.error
            )
        return step.status if ours else None
