"""SQL for leased claims: steps claimed by workers outside the pods (ClaimSteps), their
fenced outcomes and lease extensions, the leader's expiry of ended leases, and the
workers' roster.

A leased step is `claimed` with `claimed_by` the worker's id and `lease_expires_at` set
(migration 0009). Recovery of dead pods leaves it alone; its lease decides. Every write
is fenced by (step_id, attempt) and a lease that has not ended, by the database clock.
Leased claims share the pods' claim statement (so the fleet-wide type limits apply), and
every write that ends a leased attempt records it (RECORD_ATTEMPTS), its pod_id being the
worker's id; an outcome that finishes the step leaves that to the step row, as a pod's
does (RECORD_REQUEUED_ATTEMPTS).
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from fleetq_server import errors
from fleetq_server.store.claims import claim_statement
from fleetq_server.store.connection import PoolHolder
from fleetq_server.store.notifications import SUBMIT_CHANNEL
from fleetq_server.store.records import (
    ExpiredLease,
    LeasedStep,
    LeaseExtension,
    LeaseOutcome,
    WorkerRecord,
)
from fleetq_server.store.rules import CANCEL_REQUESTED, RETRIES_LEFT, outcome_assignments
from fleetq_server.store.step_attempts import RECORD_ATTEMPTS, RECORD_REQUEUED_ATTEMPTS
from fleetq_server.store.steps import release_statement

# The lease a write may act on: still this attempt's, and not ended. Every write names its
# steps by id; `IS TRUE` hides the status test from the planner's partial-index matching,
# which otherwise read every claimed step (fleetq_steps_claimed_by_idx or _lease_idx) and
# hash-joined them to the batch (1 ms per 100-step complete with 2,100 leases held), not
# one primary-key probe per step. The meaning is the same: NULL is not TRUE either.
_LEASE_HOLDS = "(s.status = 'claimed') IS TRUE AND s.lease_expires_at > now()"


def lease_refusal(step_id: str, attempt: int, row: Mapping[str, Any] | None) -> errors.FleetQError:
    """Why a fenced write matched no row, in words a worker can act on; `row` holds the
    step's status, attempt, claimed_by and lease_expires_at (None: no such step)."""
    if row is None:
        return errors.NotFoundError(f"Step {step_id} not found")
    if row["attempt"] != attempt:
        return errors.StaleAttemptError(
            f"attempt {attempt} of step {step_id} is stale: the step is at attempt "
            f"{row['attempt']} ({row['status']})"
        )
    if row["status"] != "claimed":
        return errors.StaleAttemptError(
            f"attempt {attempt} of step {step_id} has already ended: the step is {row['status']}"
        )
    if row["lease_expires_at"] is None:
        return errors.StaleAttemptError(
            f"attempt {attempt} of step {step_id} is held by pod {row['claimed_by']}, not leased"
        )
    return errors.StaleAttemptError(
        f"the lease of attempt {attempt} of step {step_id} expired at "
        f"{row['lease_expires_at'].isoformat()}; the step will be requeued"
    )


class StepLeaseQueries(PoolHolder):
    """Leased claims and everything fenced by them."""

    async def step_lease_claim(
        self, pod_id: str, worker_id: str, step_types: list[str], limit: int, lease_s: float
    ) -> list[LeasedStep]:
        """Lease up to `limit` claimable steps of `step_types` to `worker_id` for
        `lease_s` seconds, best first, through the pod `pod_id` (which must be registered
        up, as for its own claims), within the fleet-wide type limits; records the worker as
        seen, in the same statement."""
        async with self._claiming() as connection:
            rows = await connection.fetch(
                claim_statement(
                    "claimed_by = $4, lease_expires_at = now() + make_interval(secs => $5)",
                    """s.step_id, s.type, s.args, s.metadata, s.priority, s.max_retries,
                    s.retry_count, s.attempt, s.idempotency_key, s.created_ts,
                    s.lease_expires_at""",
                    before="""seen AS (
                        INSERT INTO fleetq_workers AS w (worker_id, types, last_seen_ts)
                        VALUES ($4, $2, now())
                        ON CONFLICT (worker_id) DO UPDATE
                        SET types = EXCLUDED.types, last_seen_ts = now()
                    ), """,
                ),
                pod_id,
                step_types,
                limit,
                worker_id,
                lease_s,
            )
        rows = sorted(rows, key=lambda row: (-row["priority"], row["created_ts"], row["step_id"]))
        return [
            LeasedStep(
                row["step_id"],
                row["type"],
                row["args"],
                row["metadata"],
                row["priority"],
                row["max_retries"],
                row["retry_count"],
                row["attempt"],
                row["idempotency_key"],
                row["lease_expires_at"],
            )
            for row in rows
        ]

    async def step_lease_finish_many(
        self, outcomes: Sequence[LeaseOutcome], backoffs: Sequence[float]
    ) -> list[str | errors.FleetQError]:
        """Record workers' outcomes in one fenced UPDATE: success completes the step, a
        failure is retried (after `backoffs[retry_count]` seconds) or fails it.

        Returns, per outcome in order, the step's new status, or the NotFoundError or
        StaleAttemptError saying why the outcome changed nothing.
        """
        if not outcomes:
            return []
        async with self._connection() as connection:
            # `held` is the row before the write (a self-join sees the old version): the
            # ended attempt's worker, whose claimed_by a retry clears.
            rows = await connection.fetch(
                f"""
                WITH ended AS (
                    UPDATE fleetq_steps AS s
                    SET {outcome_assignments("u.ok", may_retry="u.retryable")},
                        not_before_ts = CASE WHEN u.ok THEN s.not_before_ts ELSE now()
                            + make_interval(secs => coalesce(($7::float8[])[s.retry_count + 1],
                                                             0))
                            END,
                        result = u.result::jsonb, error = u.error::jsonb, last_update_ts = now(),
                        lease_expires_at = NULL
                    FROM unnest($1::text[], $2::int[], $3::bool[], $4::text[], $5::text[],
                                $6::bool[]) WITH ORDINALITY
                         AS u(step_id, attempt, ok, result, error, retryable, position)
                    JOIN fleetq_steps AS held ON held.step_id = u.step_id
                    WHERE s.step_id = u.step_id AND s.attempt = u.attempt AND {_LEASE_HOLDS}
                    RETURNING u.position, s.status, s.step_id, s.attempt,
                        held.claimed_by AS pod_id, s.claimed_ts,
                        CASE WHEN s.status = 'cancelled' THEN 'cancelled'
                             WHEN u.ok THEN 'completed' ELSE 'failed' END AS outcome,
                        s.error
                ), recorded AS ({RECORD_REQUEUED_ATTEMPTS})
                SELECT position, status FROM ended
                """,
                [o.step_id for o in outcomes],
                [o.attempt for o in outcomes],
                [o.error is None for o in outcomes],
                [o.result_json if o.error is None else None for o in outcomes],
                [json.dumps(o.error) if o.error is not None else None for o in outcomes],
                [o.retryable for o in outcomes],
                list(backoffs),
            )
            statuses: dict[int, str] = {row["position"]: row["status"] for row in rows}
            refused = [o for i, o in enumerate(outcomes, 1) if i not in statuses]
            explained = await self._lease_rows(connection, [o.step_id for o in refused])
        answers: list[str | errors.FleetQError] = []
        for position, outcome in enumerate(outcomes, 1):
            status = statuses.get(position)
            if status is None:
                row = explained.get(outcome.step_id)
                answers.append(lease_refusal(outcome.step_id, outcome.attempt, row))
            else:
                answers.append(status)
        return answers

    async def step_lease_extend(self, step_id: str, attempt: int, lease_s: float) -> LeaseExtension:
        """Move the lease of (`step_id`, `attempt`) to `lease_s` seconds from now and mark
        its worker seen; returns the new end and whether CancelStep asked the step to stop
        (how a worker learns of it). NotFoundError or StaleAttemptError when the lease no
        longer holds."""
        async with self._connection() as connection:
            row = await connection.fetchrow(
                f"""
                WITH extended AS (
                    UPDATE fleetq_steps AS s
                    SET lease_expires_at = now() + make_interval(secs => $3)
                    WHERE s.step_id = $1 AND s.attempt = $2 AND {_LEASE_HOLDS}
                    RETURNING s.claimed_by, s.lease_expires_at,
                              {CANCEL_REQUESTED} AS cancel_requested
                ), seen AS (
                    UPDATE fleetq_workers SET last_seen_ts = now()
                    WHERE worker_id = (SELECT claimed_by FROM extended)
                )
                SELECT lease_expires_at, cancel_requested FROM extended
                """,
                step_id,
                attempt,
                lease_s,
            )
            if row is not None:
                return LeaseExtension(row["lease_expires_at"], row["cancel_requested"])
            explained = await self._lease_rows(connection, [step_id])
        raise lease_refusal(step_id, attempt, explained.get(step_id))

    async def step_lease_release(
        self, held: Sequence[tuple[str, int]]
    ) -> list[str | errors.FleetQError]:
        """Give leased (step_id, attempt) pairs back to pending without spending a retry:
        a worker stopping, or a claim whose caller left before it was answered. Returns,
        per pair, "pending" or the NotFoundError / StaleAttemptError saying why not."""
        if not held:
            return []
        async with self._connection() as connection:
            rows = await connection.fetch(
                release_statement(
                    f"s.step_id = held.step_id AND s.attempt = held.attempt AND {_LEASE_HOLDS}",
                    "held.worker_id",
                    """(SELECT h.step_id, h.attempt, c.claimed_by AS worker_id
                        FROM unnest($1::text[], $2::int[]) AS h(step_id, attempt)
                        JOIN fleetq_steps AS c ON c.step_id = h.step_id) AS held""",
                ),
                [step_id for step_id, _ in held],
                [attempt for _, attempt in held],
            )
            released = {row["step_id"] for row in rows}
            refused = [step_id for step_id, _ in held if step_id not in released]
            explained = await self._lease_rows(connection, refused)
        return [
            "pending"
            if step_id in released
            else lease_refusal(step_id, attempt, explained.get(step_id))
            for step_id, attempt in held
        ]

    async def step_lease_expire(self, limit: int) -> list[ExpiredLease]:
        """Retry or fail up to `limit` leased steps whose lease has ended, earliest end
        first, with error type `lease_expired`, each attempt recorded as ended `lease_expired`;
        idempotent (each re-checks its lease)."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"""
                WITH due AS (
                    SELECT step_id, attempt, claimed_by FROM fleetq_steps
                    WHERE status = 'claimed' AND lease_expires_at IS NOT NULL
                      AND lease_expires_at <= now()
                    ORDER BY lease_expires_at
                    LIMIT $1
                    FOR UPDATE SKIP LOCKED
                ), ended AS (
                    UPDATE fleetq_steps AS s
                    SET {outcome_assignments("FALSE")},
                        not_before_ts = now(), last_update_ts = now(), lease_expires_at = NULL,
                        error = jsonb_build_object(
                            'type', 'lease_expired',
                            'message', 'the lease of worker ' || s.claimed_by || ' on attempt '
                                || s.attempt || ' expired; ' || CASE WHEN {RETRIES_LEFT}
                                THEN 'requeued' ELSE 'no retries left' END)
                    FROM due
                    WHERE s.step_id = due.step_id AND s.attempt = due.attempt
                      AND s.status = 'claimed' AND s.lease_expires_at <= now()
                    RETURNING s.step_id, s.type, s.status, s.attempt, due.claimed_by AS pod_id,
                              s.claimed_ts, 'lease_expired' AS outcome, s.error
                ), recorded AS ({RECORD_ATTEMPTS}), notified AS (
                    SELECT pg_notify('{SUBMIT_CHANNEL}', '')
                    WHERE EXISTS (SELECT 1 FROM ended WHERE status = 'pending')
                )
                SELECT step_id, type, status FROM ended
                UNION ALL
                SELECT NULL, NULL, NULL FROM notified
                """,
                limit,
            )
        return [ExpiredLease(r["step_id"], r["type"], r["status"]) for r in rows if r["step_id"]]

    async def step_lease_next_expiry(self) -> float | None:
        """Seconds until the earliest lease ends (negative when one has); None: none held."""
        async with self._connection() as connection:
            seconds: float | None = await connection.fetchval(
                """
                SELECT extract(epoch FROM min(lease_expires_at) - now())::float8
                FROM fleetq_steps
                WHERE status = 'claimed' AND lease_expires_at IS NOT NULL
                """
            )
        return seconds

    async def worker_list(self, seen_within_s: float, limit: int) -> list[WorkerRecord]:
        """Workers seen in the last `seen_within_s` seconds or holding leases, most
        recently seen first, with how many steps each holds leased now."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                """
                SELECT w.worker_id, w.types, w.last_seen_ts,
                       (SELECT count(*) FROM fleetq_steps AS s
                        WHERE s.status = 'claimed' AND s.claimed_by = w.worker_id
                          AND s.lease_expires_at IS NOT NULL)::int AS in_flight
                FROM fleetq_workers AS w
                WHERE w.last_seen_ts > now() - make_interval(secs => $1)
                   OR EXISTS (SELECT 1 FROM fleetq_steps AS s
                              WHERE s.status = 'claimed' AND s.claimed_by = w.worker_id
                                AND s.lease_expires_at IS NOT NULL)
                ORDER BY w.last_seen_ts DESC, w.worker_id
                LIMIT $2
                """,
                seen_within_s,
                limit,
            )
        return [
            WorkerRecord(r["worker_id"], list(r["types"]), r["in_flight"], r["last_seen_ts"])
            for r in rows
        ]

    @staticmethod
    async def _lease_rows(
        connection: asyncpg.Connection, step_ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        """The fencing columns of `step_ids`, to explain refused writes."""
        if not step_ids:
            return {}
        rows = await connection.fetch(
            "SELECT step_id, status, attempt, claimed_by, lease_expires_at FROM fleetq_steps"
            " WHERE step_id = ANY($1::text[])",
            step_ids,
        )
        return {row["step_id"]: dict(row) for row in rows}
