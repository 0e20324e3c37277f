"""SQL for steps: insert, read, claim and release (outcomes: store/step_outcomes.py)."""

from collections.abc import AsyncIterable, Sequence
from typing import Any

import asyncpg
import orjson

from fleetq_server import errors
from fleetq_server.store.claims import (
    POD_CLAIM_ASSIGNMENTS,
    POD_CLAIM_RETURNING,
    claim_statement,
    claimed_steps,
)
from fleetq_server.store.connection import PoolHolder
from fleetq_server.store.notifications import NOTIFY_SUBMITTED, SUBMIT_CHANNEL
from fleetq_server.store.records import (
    ClaimedStep,
    InsertOutcome,
    NewStep,
    StepRecord,
)
from fleetq_server.store.self_claim import SELF_CLAIM_INSERT, SELF_CLAIM_UNKEYED_INSERT
from fleetq_server.store.step_attempts import (
    RECORD_ATTEMPTS,
    STEP_COLUMNS,
    step_record,
)
from fleetq_server.store.step_copy import step_copy_parts
from fleetq_server.store.storable import json_text

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


def _step_row(step: NewStep) -> dict[str, Any]:
    """A new step as the JSON object `jsonb_to_recordset` reads back into columns."""
    return {
        "step_id": step.step_id,
        "type": step.type,
        # Written into the document as they are.
        "args": orjson.Fragment(step.args_json),
        "metadata": orjson.Fragment(step.metadata_json),
        "priority": step.priority,
        "max_retries": step.max_retries,
        "idempotency_key": step.idempotency_key,
        "client_key": step.client_key,
        "payload_hash": step.payload_hash,
        "pending_expiry_s": step.pending_expiry_s,
        # Text, not a datetime: the standard library fallback of json_text cannot write one.
        "run_at": step.run_at.isoformat() if step.run_at is not None else None,
        "delay_s": step.delay_s,
        # Only when tracing gave one: a key left out reads back as NULL.
        **({"traceparent": step.traceparent} if step.traceparent is not None else {}),
    }


# ClaimedStep's fields, read from a self-claiming insert's rows.
_CLAIMED_FIELDS = tuple(ClaimedStep.__dataclass_fields__)


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

    async def step_copy_parts(self, parts: AsyncIterable[Sequence[NewStep]]) -> int | None:
        """Plain new steps copied part by part as `parts` yields them, all or nothing: how
        many; None when a part was not plain (see `step_copy.step_copy_parts`)."""
        async with self._connection() as connection:
            return await step_copy_parts(connection, parts)

    async def step_insert_claim(
        self, steps: Sequence[NewStep], pod_id: str, step_types: list[str], limit: int
    ) -> tuple[list[InsertOutcome | errors.ConflictError], list[ClaimedStep] | None, bool]:
        """Insert steps as `step_insert_many` does, and claim for `pod_id` what
        `step_claim_batch` would claim right after (up to `limit`): the receiving pod
        starts a new step without the NOTIFY's round trip to its LISTEN connection and a
        claim of its own. Only new steps left pending are announced to the fleet (waking
        pods, and this pod's own claim loop, for steps already running would cost each a
        claim).

        Usually one statement and one flushed commit (store.self_claim): when nothing of
        the pod's types waits and no type limit applies, the claim could take only new
        steps, so the insert writes them claimed. Otherwise the insert commits (flushed: it
        acknowledges the submit), then the ordinary claim runs on its own commit (any
        claim's: store.claims.UNFLUSHED_CTE) and sees the new rows beside every other
        pending step (priority, age, type limits, a pod registered up).

        The claimed steps are None when the database became unavailable after the insert
        committed: its outcomes stand, and the claim may have committed. A failure of the
        insert itself raises (it may have committed, with a claim). The flag is true when
        the one statement found nothing of `step_types` waiting and left nothing pending."""
        statement = SELF_CLAIM_INSERT if _keyed(steps) else SELF_CLAIM_UNKEYED_INSERT
        async with self._planned_once() as connection:
            rows = await connection.fetch(
                statement, json_text([_step_row(step) for step in steps]), pod_id, step_types, limit
            )
            inserted = {row["step_id"] for row in rows}
            outcomes = await self._resolve_duplicates(connection, steps, inserted)
        if rows and rows[0]["fast"]:
            claimed = [
                ClaimedStep(**{name: row[name] for name in _CLAIMED_FIELDS})
                for row in rows
                if row["status"] == "claimed"
            ]
            claimed.sort(key=lambda step: (-step.priority, step.created_ts, step.step_id))
            return outcomes, claimed, len(claimed) == len(rows)
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
            return outcomes, None, False
        return outcomes, claimed, False

    async def _insert(
        self, connection: Any, steps: Sequence[NewStep]
    ) -> list[InsertOutcome | errors.ConflictError]:
        """The insert of `step_insert_many` on `connection`, with its one NOTIFY."""
        # The batch travels as one JSON document: asyncpg encodes nine arrays of a
        # thousand elements value by value (8 ms of pod CPU per 1,000 steps, measured),
        # orjson writes the document in under 2 ms and PostgreSQL parses it in C.
        rows = await connection.fetch(
            f"""
            WITH inserted AS ({INSERT_STEPS if _keyed(steps) else INSERT_UNKEYED_STEPS}),
                 notified AS ({NOTIFY_SUBMITTED})
            SELECT step_id FROM inserted UNION ALL SELECT NULL FROM notified
            """,
            json_text([_step_row(step) for step in steps]),
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
            claim_statement(POD_CLAIM_ASSIGNMENTS, POD_CLAIM_RETURNING, unflushed=unflushed),
            pod_id,
            step_types,
            limit,
        )
        return claimed_steps(rows)

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
