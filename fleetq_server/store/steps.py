"""SQL for steps: insert, read, claim, and the fenced outcome updates."""

from typing import Any

import asyncpg

from fleetq_server import errors
from fleetq_server.store.connection import PoolHolder, translate_errors
from fleetq_server.store.records import ClaimedStep, InsertOutcome, NewStep, StepRecord

# NOTIFY channel idle pods LISTEN on; the payload is unused (any submit wakes claimers).
SUBMIT_CHANNEL = "fleetq_step_submitted"

_STEP_COLUMNS = """
    step_id, status, type, args, metadata, priority, max_retries, retry_count, claimed_by,
    attempt, idempotency_key, created_ts, last_update_ts, result, error
"""


def _step_record(row: asyncpg.Record) -> StepRecord:
    return StepRecord(**dict(row))


class StepQueries(PoolHolder):
    """Every statement that touches `fleetq_steps` outside recovery."""

    @translate_errors
    async def step_insert(self, step: NewStep) -> InsertOutcome:
        """Insert a step and wake idle pods; de-duplicate on the client's key.

        The unique constraint on client_key makes concurrent duplicates safe: the losers
        of the race see the winner's row once it commits (ON CONFLICT waits for it).
        """
        async with self._connection() as connection:
            row = await connection.fetchrow(
                f"""
                WITH inserted AS (
                    INSERT INTO fleetq_steps (step_id, type, args, metadata, priority,
                        max_retries, idempotency_key, client_key, payload_hash)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                    ON CONFLICT (client_key) DO NOTHING
                    RETURNING step_id
                )
                SELECT step_id, pg_notify('{SUBMIT_CHANNEL}', '') FROM inserted
                """,
                step.step_id,
                step.type,
                step.args,
                step.metadata,
                step.priority,
                step.max_retries,
                step.idempotency_key,
                step.client_key,
                step.payload_hash,
            )
            if row is not None:
                return InsertOutcome(step_id=row["step_id"], created=True)
            existing = await connection.fetchrow(
                "SELECT step_id, payload_hash FROM fleetq_steps WHERE client_key = $1",
                step.client_key,
            )
        if existing is None:  # the original was deleted by retention between the two reads
            raise errors.ConflictError("idempotency key was just released; retry the submit")
        if existing["payload_hash"] != step.payload_hash:
            raise errors.ConflictError(
                "idempotency_key was already used for a different payload "
                f"(step {existing['step_id']})"
            )
        return InsertOutcome(step_id=existing["step_id"], created=False)

    @translate_errors
    async def step_get(self, step_id: str) -> StepRecord:
        """One step; NotFoundError when there is none."""
        async with self._connection() as connection:
            row = await connection.fetchrow(
                f"SELECT {_STEP_COLUMNS} FROM fleetq_steps WHERE step_id = $1", step_id
            )
        if row is None:
            raise errors.NotFoundError(f"Step {step_id} not found")
        return _step_record(row)

    @translate_errors
    async def step_claim_batch(
        self, pod_id: str, step_types: list[str], limit: int
    ) -> list[ClaimedStep]:
        """Claim up to `limit` claimable steps of `step_types`, best first.

        One statement: SKIP LOCKED lets pods claim concurrently without waiting on each
        other, and the pod must still be registered up, so a pod presumed dead cannot
        claim. Returned in claim order (priority DESC, created_ts).
        """
        async with self._connection() as connection:
            rows = await connection.fetch(
                """
                WITH picked AS (
                    SELECT step_id FROM fleetq_steps
                    WHERE status = 'pending' AND not_before_ts <= now()
                      AND type = ANY($2::text[])
                      AND EXISTS (SELECT 1 FROM fleetq_pods
                                  WHERE pod_id = $1 AND status = 'up')
                    ORDER BY priority DESC, created_ts, step_id
                    LIMIT $3
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE fleetq_steps AS s
                SET status = 'claimed', claimed_by = $1, attempt = s.attempt + 1,
                    last_update_ts = now()
                FROM picked WHERE s.step_id = picked.step_id
                RETURNING s.step_id, s.type, s.args, s.metadata, s.priority, s.max_retries,
                          s.retry_count, s.attempt, s.idempotency_key, s.created_ts,
                          s.last_update_ts AS claimed_ts
                """,
                pod_id,
                step_types,
                limit,
            )
        claimed = [ClaimedStep(**dict(row)) for row in rows]
        claimed.sort(key=lambda step: (-step.priority, step.created_ts, step.step_id))
        return claimed

    @translate_errors
    async def step_complete(self, step: ClaimedStep, pod_id: str, result: Any) -> bool:
        """Store a success; False when the claim was lost (fenced out)."""
        async with self._connection() as connection:
            status = await connection.execute(
                """
                UPDATE fleetq_steps
                SET status = 'completed', result = $4, error = NULL,
                    finished_ts = now(), last_update_ts = now()
                WHERE step_id = $1 AND status = 'claimed' AND claimed_by = $2 AND attempt = $3
                """,
                step.step_id,
                pod_id,
                step.attempt,
                result,
            )
        return bool(status == "UPDATE 1")

    @translate_errors
    async def step_fail(
        self, step: ClaimedStep, pod_id: str, error: dict[str, str], backoff_s: float
    ) -> str | None:
        """Record a failed execution: retry after `backoff_s` while the budget lasts.

        Returns the new status ('pending' or 'failed'), or None when fenced out. The
        budget check happens in the UPDATE itself, against the stored retry_count.
        """
        async with self._connection() as connection:
            new_status: str | None = await connection.fetchval(
                """
                UPDATE fleetq_steps
                SET status = CASE WHEN retry_count < max_retries
                                  THEN 'pending' ELSE 'failed' END,
                    retry_count = CASE WHEN retry_count < max_retries
                                       THEN retry_count + 1 ELSE retry_count END,
                    claimed_by = CASE WHEN retry_count < max_retries
                                      THEN NULL ELSE claimed_by END,
                    not_before_ts = now() + make_interval(secs => $5),
                    finished_ts = CASE WHEN retry_count < max_retries THEN NULL ELSE now() END,
                    error = $4, last_update_ts = now()
                WHERE step_id = $1 AND status = 'claimed' AND claimed_by = $2 AND attempt = $3
                RETURNING status
                """,
                step.step_id,
                pod_id,
                step.attempt,
                error,
                backoff_s,
            )
        return new_status

    @translate_errors
    async def step_release(self, steps: list[ClaimedStep], pod_id: str) -> int:
        """Give claimed steps back to pending without spending a retry (shutdown)."""
        if not steps:
            return 0
        async with self._connection() as connection:
            status = await connection.execute(
                """
                UPDATE fleetq_steps AS s
                SET status = 'pending', claimed_by = NULL, not_before_ts = now(),
                    last_update_ts = now()
                FROM unnest($1::text[], $2::int[]) AS held(step_id, attempt)
                WHERE s.step_id = held.step_id AND s.attempt = held.attempt
                  AND s.status = 'claimed' AND s.claimed_by = $3
                """,
                [step.step_id for step in steps],
                [step.attempt for step in steps],
                pod_id,
            )
        return int(status.split()[-1])
