"""SQL for steps: insert, read, claim, and the fenced outcome updates."""

import json
from collections.abc import AsyncIterable, Sequence
from typing import Any

import asyncpg
import orjson

from fleetq_server import errors
from fleetq_server.store.claims import claim_statement
from fleetq_server.store.connection import PoolHolder
from fleetq_server.store.notifications import NOTIFY_SUBMITTED, SUBMIT_CHANNEL
from fleetq_server.store.records import (
    ClaimedStep,
    InsertOutcome,
    NewStep,
    StepOutcome,
    StepRecord,
)
from fleetq_server.store.rules import outcome_assignments
from fleetq_server.store.step_attempts import (
    RECORD_ATTEMPTS,
    RECORD_REQUEUED_ATTEMPTS,
    STEP_COLUMNS,
    step_record,
)
from fleetq_server.store.step_copy import step_copy_parts

# The insert of new steps, as a CTE body ($1: the steps as a JSON array of `_step_row`s),
# returning (step_id, type) of those inserted; a repeated client key inserts nothing.
_INSERT_STEPS = """
    INSERT INTO fleetq_steps (step_id, type, args, metadata, priority,
        max_retries, idempotency_key, client_key, payload_hash,
        pending_expires_at, run_at, not_before_ts, traceparent)
    SELECT step_id, type, args, metadata, priority, max_retries,
           idempotency_key, client_key, payload_hash,
           -- a scheduled step's wait starts when it falls due
           COALESCE(scheduled, now()) + make_interval(secs => pending_expiry_s),
           scheduled, COALESCE(scheduled, now()), traceparent
    FROM jsonb_to_recordset($1::text::jsonb)
         AS n(step_id text, type text, args jsonb, metadata jsonb,
              priority int, max_retries int, idempotency_key text,
              client_key text, payload_hash text, pending_expiry_s float8,
              run_at timestamptz, delay_s float8, traceparent text)
    CROSS JOIN LATERAL (SELECT COALESCE(n.run_at,
        now() + make_interval(secs => n.delay_s)) AS scheduled) AS s
    {on_conflict}
    RETURNING step_id, type
"""
INSERT_STEPS = _INSERT_STEPS.format(
    on_conflict="ON CONFLICT (client_key) WHERE client_key IS NOT NULL DO NOTHING"
)
# Without client keys: no ON CONFLICT, whose speculative insertion logs a WAL record more per row.
INSERT_UNKEYED_STEPS = _INSERT_STEPS.format(on_conflict="")


def _json(value: Any) -> str:
    """JSON text for jsonb array parameters: asyncpg would read a list value as a
    nested array, so arrays of JSON travel as text[] and are cast in SQL. orjson is ~10x
    faster per value; the standard library covers what it refuses (integers beyond 64
    bits). A result arrives serialised already (`StepOutcome.result_json`)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"))


def _step_row(step: NewStep) -> dict[str, Any]:
    """A new step as the JSON object `jsonb_to_recordset` reads back into columns."""
    return {
        "step_id": step.step_id,
        "type": step.type,
        "args": step.args,
        "metadata": step.metadata,
        "priority": step.priority,
        "max_retries": step.max_retries,
        "idempotency_key": step.idempotency_key,
        "client_key": step.client_key,
        "payload_hash": step.payload_hash,
        "pending_expiry_s": step.pending_expiry_s,
        # Text, not a datetime: the standard library fallback of _json cannot write one.
        "run_at": step.run_at.isoformat() if step.run_at is not None else None,
        "delay_s": step.delay_s,
        # Only when tracing gave one: a key left out reads back as NULL.
        **({"traceparent": step.traceparent} if step.traceparent is not None else {}),
    }


def _keyed(steps: Sequence[NewStep]) -> bool:
    return any(step.client_key is not None for step in steps)  # a key its client gave


def release_statement(fence: str, pod_id: str, source: str = "") -> str:
    """The one release: claimed steps `s` matching `fence` (joined to the FROM item
    `source` when given) back to pending, claimable at once, with no retry spent (their
    handler is not running), returning (step_id, type). Each attempt ends "released" in
    the same statement; `pod_id` is the SQL of the releasing pod's id (RETURNING sees the
    row after claimed_by is cleared). Its NOTIFY wakes idle pods at once instead of at
    their next poll."""
    return f"""
        WITH ended AS (
            UPDATE fleetq_steps AS s
            SET status = 'pending', claimed_by = NULL, not_before_ts = now(),
                last_update_ts = now(), lease_expires_at = NULL
            {f"FROM {source}" if source else ""}
            WHERE s.status = 'claimed' AND {fence}
            RETURNING s.step_id, s.type, s.attempt, {pod_id}::text AS pod_id, s.claimed_ts,
                      'released' AS outcome, NULL::jsonb AS error
        ), recorded AS ({RECORD_ATTEMPTS})
        SELECT step_id, type, pg_notify('{SUBMIT_CHANNEL}', '') FROM ended
        """


class StepQueries(PoolHolder):
    """Every statement that touches `fleetq_steps` outside recovery."""

    async def step_insert_many(
        self, steps: Sequence[NewStep], *, atomic: bool = False
    ) -> list[InsertOutcome | errors.ConflictError]:
        """Insert steps with one NOTIFY; de-duplicate on client keys.

        Returns, per step in order, its outcome or the ConflictError of a client key
        reused with a different payload. With `atomic`, everything happens in one
        transaction and any conflict raises instead, so nothing is written (without
        client keys nothing conflicts, and the one INSERT statement is that transaction).
        Otherwise the INSERT commits on its own: one round trip for a batch of new steps,
        which is what coalesced single submits are. The unique index of client keys
        makes concurrent duplicates safe: ON CONFLICT waits for the competing insert.
        """
        if not steps:
            return []
        scope = self._transaction() if atomic and _keyed(steps) else self._connection()
        async with scope as connection:
            outcomes = await self._insert(connection, steps)
            if atomic:
                for outcome in outcomes:
                    if isinstance(outcome, errors.ConflictError):
                        raise outcome
        return outcomes

    async def step_copy_parts(
        self, parts: AsyncIterable[Sequence[NewStep]]
    ) -> list[InsertOutcome] | None:
        """Plain new steps copied part by part as `parts` yields them, all or nothing;
        None when a part was not plain (see `step_copy.step_copy_parts`)."""
        async with self._connection() as connection:
            return await step_copy_parts(connection, parts)

    async def step_insert_claim(
        self, steps: Sequence[NewStep], pod_id: str, step_types: list[str], limit: int
    ) -> tuple[list[InsertOutcome | errors.ConflictError], list[ClaimedStep] | None]:
        """Insert steps as `step_insert_many` does but without its NOTIFY, then claim for
        `pod_id` with `step_claim_batch`: the receiving pod starts a new step without the
        NOTIFY's round trip to its LISTEN connection and a claim of its own.

        Two commits, not one transaction (BEGIN, insert, claim, COMMIT): the insert's is
        flushed, so the submit is durable before it is acknowledged, and the claim's is any
        claim's (store.claims.UNFLUSHED_CTE); the step starts two round trips sooner. It is
        the ordinary claim statement, so it sees the new rows beside every other pending
        step and takes the best `limit` of them (priority, age, type limits, a pod
        registered up); only new steps it left pending are then announced to the fleet
        (waking pods, and this pod's own claim loop, for steps already running would cost
        each a claim).

        The claimed steps are None when the database became unavailable after the insert
        committed: the insert's outcomes stand, and the claim may have committed too.
        """
        async with self._connection() as connection:
            outcomes = await self._insert(connection, steps, notify=False)
        try:
            claimed = await self.step_claim_batch(pod_id, step_types, limit)
            taken = {step.step_id for step in claimed}
            pending = [
                o.step_id
                for o in outcomes
                if isinstance(o, InsertOutcome) and o.created and o.step_id not in taken
            ]
            if pending:
                async with self._connection() as connection:
                    await connection.execute(
                        f"""WITH inserted AS (SELECT step_id, type FROM fleetq_steps
                                              WHERE step_id = ANY($1::text[]))
                            {NOTIFY_SUBMITTED}""",
                        pending,
                    )
        except errors.DatabaseUnavailableError:
            return outcomes, None
        return outcomes, claimed

    async def _insert(
        self, connection: Any, steps: Sequence[NewStep], *, notify: bool = True
    ) -> list[InsertOutcome | errors.ConflictError]:
        """The insert of `step_insert_many` on `connection`, with its one NOTIFY unless
        `notify` is false."""
        # The batch travels as one JSON document: asyncpg encodes nine arrays of a
        # thousand elements value by value (8 ms of pod CPU per 1,000 steps, measured),
        # orjson writes the document in under 2 ms and PostgreSQL parses it in C.
        notified = f", notified AS ({NOTIFY_SUBMITTED})" if notify else ""
        rows = await connection.fetch(
            f"""
            WITH inserted AS ({INSERT_STEPS if _keyed(steps) else INSERT_UNKEYED_STEPS}){notified}
            SELECT step_id FROM inserted
            {"UNION ALL SELECT NULL FROM notified" if notify else ""}
            """,
            _json([_step_row(step) for step in steps]),
        )
        inserted = {row["step_id"] for row in rows if row["step_id"] is not None}
        return await self._resolve_duplicates(connection, steps, inserted)

    @staticmethod
    async def _resolve_duplicates(
        connection: Any, steps: Sequence[NewStep], inserted: set[str]
    ) -> list[InsertOutcome | errors.ConflictError]:
        """Match each step that was not inserted to the row holding its client key."""
        keys = [s.client_key for s in steps if s.step_id not in inserted and s.client_key]
        existing: dict[str, asyncpg.Record] = {}
        if keys:
            rows = await connection.fetch(
                "SELECT step_id, client_key, payload_hash FROM fleetq_steps"
                " WHERE client_key = ANY($1::text[])",
                keys,
            )
            existing = {row["client_key"]: row for row in rows}
        outcomes: list[InsertOutcome | errors.ConflictError] = []
        for step in steps:
            row = existing.get(step.client_key) if step.client_key is not None else None
            if step.step_id in inserted:
                outcomes.append(InsertOutcome(step_id=step.step_id, created=True))
            elif row is None:
                # The row that held the key was deleted (retention) after our INSERT saw it.
                outcomes.append(
                    errors.ConflictError("idempotency_key was just released; submit again")
                )
            elif row["payload_hash"] != step.payload_hash:
                # Nothing of the step holding the key: a guessed key must not lead anyone
                # to another client's step (its args, metadata and result).
                outcomes.append(
                    errors.ConflictError("idempotency_key was already used for a different payload")
                )
            else:
                outcomes.append(InsertOutcome(step_id=row["step_id"], created=False))
        return outcomes

    async def step_get(self, step_id: str) -> StepRecord:
        """One step; NotFoundError when there is none."""
        async with self._connection() as connection:
            row = await connection.fetchrow(
                f"SELECT {STEP_COLUMNS} FROM fleetq_steps WHERE step_id = $1", step_id
            )
        if row is None:
            raise errors.NotFoundError(f"Step {step_id} not found")
        return step_record(row)

    async def step_claim_batch(
        self, pod_id: str, step_types: list[str], limit: int
    ) -> list[ClaimedStep]:
        """Claim up to `limit` claimable steps of `step_types`, best first.

        One statement: SKIP LOCKED lets pods claim concurrently without waiting on each
        other, and the pod must still be registered up, so a pod presumed dead cannot
        claim (PICK_CLAIMABLE, which also applies the fleet-wide type limits). A leased
        claim's end is cleared: this claim is the pod's. Returned in claim order (priority
        DESC, created_ts).
        """
        async with self._claiming() as connection:
            return await self._claim(
                connection, pod_id, step_types, limit, unflushed=not self._durable_claims
            )

    @staticmethod
    async def _claim(
        connection: Any, pod_id: str, step_types: list[str], limit: int, *, unflushed: bool
    ) -> list[ClaimedStep]:
        """The claim statement of `step_claim_batch` on `connection`; `unflushed`: see
        `claim_statement`."""
        rows = await connection.fetch(
            claim_statement(
                "claimed_by = $1, lease_expires_at = NULL",
                """s.step_id, s.type, s.args, s.metadata, s.priority, s.max_retries,
                s.retry_count, s.attempt, s.idempotency_key, s.created_ts,
                s.not_before_ts, s.claimed_ts""",
                unflushed=unflushed,
            ),
            pod_id,
            step_types,
            limit,
        )
        claimed = [ClaimedStep(**dict(row)) for row in rows]
        claimed.sort(key=lambda step: (-step.priority, step.created_ts, step.step_id))
        return claimed

    async def step_finish_many(self, outcomes: Sequence[StepOutcome]) -> list[str | None]:
        """Record many executions' outcomes in one fenced UPDATE.

        Success completes the step; failure requeues it after its backoff or fails it
        (retry or fail: `rules.outcome_assignments`, checked against the stored row).
        Returns, per outcome in order, the new status, or None where the claim was lost
        (another pod now holds the step, or it was requeued): fenced out.
        """
        if not outcomes:
            return []
        async with self._connection() as connection:
            # A requeued attempt's row is written by the same statement, so the claim stays
            # one UPDATE and an outcome one round trip; a finishing attempt's is the step
            # row (RECORD_REQUEUED_ATTEMPTS). `IS TRUE` keeps the planner off the partial
            # fleetq_steps_claimed_by_idx (as step_leases._LEASE_HOLDS does): through it,
            # each outcome read every step its pod held, dead entries too, instead of one
            # primary-key probe (benchmarks/outcome_wal.py, 4,000 steps held: 195-558 ms
            # of PostgreSQL CPU per 1,000 outcomes, 107-135 with the probe).
            rows = await connection.fetch(
                f"""
                WITH ended AS (
                    UPDATE fleetq_steps AS s
                    SET {outcome_assignments("u.ok", may_retry="u.retryable")},
                        not_before_ts = CASE WHEN u.ok THEN s.not_before_ts
                                             ELSE now() + make_interval(secs => u.backoff) END,
                        result = u.result::jsonb, error = u.error::jsonb, last_update_ts = now()
                    FROM unnest($1::text[], $2::int[], $3::text[], $4::bool[], $5::text[],
                                $6::text[], $7::float8[], $8::bool[]) WITH ORDINALITY
                         AS u(step_id, attempt, pod_id, ok, result, error, backoff, retryable,
                              position)
                    WHERE s.step_id = u.step_id AND s.attempt = u.attempt
                      AND s.claimed_by = u.pod_id AND (s.status = 'claimed') IS TRUE
                    RETURNING u.position, s.status, s.step_id, s.attempt, u.pod_id, s.claimed_ts,
                        CASE WHEN s.status = 'cancelled' THEN 'cancelled'
                             WHEN u.ok THEN 'completed' ELSE 'failed' END AS outcome,
                        s.error
                ), recorded AS ({RECORD_REQUEUED_ATTEMPTS})
                SELECT position, status FROM ended
                """,
                [o.step.step_id for o in outcomes],
                [o.step.attempt for o in outcomes],
                [o.pod_id for o in outcomes],
                [o.error is None for o in outcomes],
                [o.result_json if o.error is None else None for o in outcomes],
                [_json(o.error) if o.error is not None else None for o in outcomes],
                [o.backoff_s for o in outcomes],
                [o.retryable for o in outcomes],
            )
        statuses = {row["position"]: row["status"] for row in rows}
        return [statuses.get(position) for position in range(1, len(outcomes) + 1)]

    async def step_expire_pending(self, limit: int) -> int:
        """Fail up to `limit` pending steps whose pending expiry has passed, oldest deadline
        first, with error type `expired`; returns how many.

        Reads only the expiring steps, from their partial index (migration 0005); steps a
        claim holds locked are skipped, and the claim itself refuses expired steps.
        """
        async with self._connection() as connection:
            status = await connection.execute(
                """
                WITH due AS (
                    SELECT step_id FROM fleetq_steps
                    WHERE status = 'pending' AND pending_expires_at IS NOT NULL
                      AND pending_expires_at <= now()
                    ORDER BY pending_expires_at
                    LIMIT $1
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE fleetq_steps AS s
                SET status = 'failed', finished_ts = now(), last_update_ts = now(),
                    error = jsonb_build_object(
                        'type', 'expired',
                        'message', 'the step was still pending at its expiry, '
                            || to_char(s.pending_expires_at AT TIME ZONE 'UTC',
                                       'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
                FROM due WHERE s.step_id = due.step_id AND s.status = 'pending'
                """,
                limit,
            )
        return int(status.split()[-1])

    async def step_release(self, steps: list[ClaimedStep], pod_id: str) -> list[str]:
        """Give claimed steps back to pending without spending a retry (shutdown);
        returns the ids of those released (a step no longer held is left alone)."""
        if not steps:
            return []
        async with self._connection() as connection:
            rows = await connection.fetch(
                release_statement(
                    "s.step_id = held.step_id AND s.attempt = held.attempt AND s.claimed_by = $3",
                    "$3",
                    "unnest($1::text[], $2::int[]) AS held(step_id, attempt)",
                ),
                [step.step_id for step in steps],
                [step.attempt for step in steps],
                pod_id,
            )
        return [row["step_id"] for row in rows]
