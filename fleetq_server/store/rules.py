"""SQL for the rules more than one statement applies, each written once."""

# Retry or fail: an execution that ended without success (a handler's failure, or its pod
# lost) returns the step to pending with one more retry spent while it has retries left;
# otherwise the step fails, keeping its last claimant. Checked against the stored row `s`.
RETRIES_LEFT = "s.retry_count < s.max_retries"

# CancelStep asked a claimed step to stop: however its execution ends, the step ends
# `cancelled` (never requeued), through the same fenced statement as any outcome.
CANCEL_REQUESTED = "s.cancel_requested_ts IS NOT NULL"


def outcome_assignments(succeeded: str, may_retry: str | None = None) -> str:
    """SET assignments for a claimed step `s` whose execution ended: cancelled when a cancel
    was requested, completed when the SQL boolean `succeeded` holds, else retry or fail
    (see RETRIES_LEFT); with `may_retry`, a failure is retried only where that SQL boolean
    holds too (a worker's or handler's non-retryable error fails at once)."""
    retries_left = RETRIES_LEFT if may_retry is None else f"({may_retry}) AND {RETRIES_LEFT}"
    retried = f"NOT ({succeeded}) AND {retries_left} AND NOT {CANCEL_REQUESTED}"
    return f"""
        status = CASE WHEN {CANCEL_REQUESTED} THEN 'cancelled'
                      WHEN {succeeded} THEN 'completed'
                      WHEN {retries_left} THEN 'pending' ELSE 'failed' END,
        retry_count = CASE WHEN {retried} THEN s.retry_count + 1 ELSE s.retry_count END,
        claimed_by = CASE WHEN {retried} THEN NULL ELSE s.claimed_by END,
        finished_ts = CASE WHEN {retried} THEN NULL ELSE now() END"""
