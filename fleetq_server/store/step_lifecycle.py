"""SQL for CancelStep and RetryStep, and the LISTEN that tells pods about cancels.

A pending step is cancelled at once. A claimed one gets `cancel_requested_ts`: its pod is
told through STEP_CANCEL_CHANNEL (and finds it on its next poll of
`step_cancels_requested` if it missed that), and whatever outcome it then writes ends the
step `cancelled` (`rules.outcome_assignments`), fenced like any outcome. Row locks order a
cancel and a completion: whichever commits second sees the first's status.
"""

from collections.abc import Callable

from fleetq_server import errors
from fleetq_server.store.connection import PoolHolder
from fleetq_server.store.notifications import SUBMIT_CHANNEL, ListenConnection
from fleetq_server.store.step_attempts import RECORD_FINISHING_ATTEMPT

# Payload: the id of a claimed step whose cancel was just requested.
STEP_CANCEL_CHANNEL = "fleetq_step_cancel"


async def _refusal(connection: object, step_id: str, action: str, allowed: str) -> None:
    """Raise NotFoundError or ConflictError for a step `action` did not change."""
    status = await connection.fetchval(  # type: ignore[attr-defined]
        "SELECT status FROM fleetq_steps WHERE step_id = $1", step_id
    )
    if status is None:
        raise errors.NotFoundError(f"Step {step_id} not found")
    raise errors.ConflictError(f"Step {step_id} is {status}: only {allowed} steps can be {action}")


class StepLifecycleQueries(PoolHolder):
    """Cancels and retries asked for by clients."""

    async def step_cancel(self, step_id: str) -> str:
        """Cancel a pending step, or request the cancel of a claimed one; returns the
        status it now has ("cancelled" or "claimed"). A step already cancelled answers
        "cancelled" again; NotFoundError for no step, ConflictError for a finished one."""
        async with self._transaction() as connection:
            row = await connection.fetchrow(
                f"""
                WITH changed AS (
                    UPDATE fleetq_steps AS s
                    SET status = CASE WHEN s.status = 'pending' THEN 'cancelled'
                                      ELSE s.status END,
                        finished_ts = CASE WHEN s.status = 'pending' THEN now()
                                           ELSE s.finished_ts END,
                        cancel_requested_ts = COALESCE(s.cancel_requested_ts, now()),
                        last_update_ts = now()
                    WHERE s.step_id = $1 AND s.status IN ('pending', 'claimed')
                    RETURNING s.status
                )
                SELECT status, CASE WHEN status = 'claimed'
                                    THEN pg_notify('{STEP_CANCEL_CHANNEL}', $1) END
                FROM changed
                """,
                step_id,
            )
            if row is not None:
                status: str = row["status"]
                return status
            current = await connection.fetchval(
                "SELECT status FROM fleetq_steps WHERE step_id = $1", step_id
            )
            if current == "cancelled":
                return "cancelled"
            await _refusal(connection, step_id, "cancelled", "pending or claimed")
        raise AssertionError("unreachable")  # _refusal always raises

    async def step_retry(self, step_id: str) -> None:
        """Put a failed or cancelled step back to pending with a fresh retry budget (its
        attempts are kept, the one that finished it written as a row of its own now: see
        RECORD_FINISHING_ATTEMPT; a pending expiry restarts its clock); NotFoundError for
        no step, ConflictError for any other status."""
        async with self._transaction() as connection:
            step_type = await connection.fetchval(
                f"""
                WITH finished AS (
                    SELECT step_id, attempt, claimed_by, claimed_ts, finished_ts, status, error
                    FROM fleetq_steps
                    WHERE step_id = $1 AND status IN ('failed', 'cancelled')
                    FOR UPDATE
                ), recorded AS ({RECORD_FINISHING_ATTEMPT}), retried AS (
                    UPDATE fleetq_steps AS s
                    SET status = 'pending', retry_count = 0, claimed_by = NULL,
                        finished_ts = NULL, cancel_requested_ts = NULL,
                        not_before_ts = now(), last_update_ts = now(),
                        pending_expires_at = now() + (s.pending_expires_at
                                                      - COALESCE(s.run_at, s.created_ts))
                    FROM finished
                    WHERE s.step_id = finished.step_id AND s.status IN ('failed', 'cancelled')
                    RETURNING s.type
                )
                SELECT type FROM retried, pg_notify('{SUBMIT_CHANNEL}', type)
                """,
                step_id,
            )
            if step_type is None:
                await _refusal(connection, step_id, "retried", "failed or cancelled")

    async def step_cancels_requested(self, pod_id: str) -> list[str]:
        """Ids of the steps `pod_id` holds whose cancel was requested (the poll behind
        the LISTEN); read through the claimed steps' partial index."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT step_id FROM fleetq_steps WHERE status = 'claimed' AND claimed_by = $1"
                " AND cancel_requested_ts IS NOT NULL",
                pod_id,
            )
        return [row["step_id"] for row in rows]


class StepCancelSubscription(ListenConnection):
    """LISTENs on STEP_CANCEL_CHANNEL and calls `on_cancel(step_id)` for every claimed step
    whose cancel is requested, whichever pod holds it."""

    channel = STEP_CANCEL_CHANNEL

    def __init__(self, dsn: str, on_cancel: Callable[[str], None]) -> None:
        super().__init__(dsn)
        self._on_cancel = on_cancel

    def on_payload(self, payload: str) -> None:
        if payload:
            self._on_cancel(payload)
