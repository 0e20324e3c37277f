"""SQL for the fenced outcome write of a pod's executions, alone or together with the
claim of the steps that take their slots."""

from collections.abc import Sequence
from typing import Any, Protocol

from fleetq_server.store.claims import (
    POD_CLAIM_ASSIGNMENTS,
    POD_CLAIM_RETURNING,
    claim_statement,
    claimed_steps,
)
from fleetq_server.store.connection import PoolHolder
from fleetq_server.store.records import ClaimedStep, StepOutcome
from fleetq_server.store.rules import outcome_assignments
from fleetq_server.store.step_attempts import RECORD_REQUEUED_ATTEMPTS
from fleetq_server.store.storable import json_text

# The outcome write, as CTEs `ended` and `recorded`, its eight arrays from parameter
# `${first}` on (`_outcome_arguments`). A requeued attempt's row is written by the same
# statement, so the claim stays one UPDATE and an outcome one round trip; a finishing
# attempt's is the step row (RECORD_REQUEUED_ATTEMPTS). `IS TRUE` keeps the planner off the
# partial fleetq_steps_claimed_by_idx (as step_leases._LEASE_HOLDS does): through it, each
# outcome read every step its pod held, dead entries too, instead of one primary-key probe
# (benchmarks/outcome_wal.py, 4,000 steps held: 195-558 ms of PostgreSQL CPU per 1,000
# outcomes, 107-135 with the probe).
_OUTCOME_CTES = """
    ended AS (
        UPDATE fleetq_steps AS s
        SET {assignments},
            not_before_ts = CASE WHEN u.ok THEN s.not_before_ts
                                 ELSE now() + make_interval(secs => u.backoff) END,
            result = u.result::jsonb, error = u.error::jsonb, last_update_ts = now()
        FROM unnest(${0}::text[], ${1}::int[], ${2}::text[], ${3}::bool[], ${4}::text[],
                    ${5}::text[], ${6}::float8[], ${7}::bool[]) WITH ORDINALITY
             AS u(step_id, attempt, pod_id, ok, result, error, backoff, retryable, position)
        WHERE s.step_id = u.step_id AND s.attempt = u.attempt
          AND s.claimed_by = u.pod_id AND (s.status = 'claimed') IS TRUE
        RETURNING u.position, s.status, s.step_id, s.attempt, u.pod_id, s.claimed_ts,
            CASE WHEN s.status = 'cancelled' THEN 'cancelled'
                 WHEN u.ok THEN 'completed' ELSE 'failed' END AS outcome,
            s.error
    ), recorded AS ({recorded})"""


def _outcome_ctes(first: int) -> str:
    """_OUTCOME_CTES with its parameters numbered from `first`."""
    return _OUTCOME_CTES.format(
        *range(first, first + 8),
        assignments=outcome_assignments("u.ok", may_retry="u.retryable"),
        recorded=RECORD_REQUEUED_ATTEMPTS,
    )


FINISH = f"WITH {_outcome_ctes(1)} SELECT position, status FROM ended"
# The claim of `step_claim_batch` ($1-$3) and the outcome write ($4-$11) in one statement:
# the rows that `ended` reads are claimed and those `picked` reads are pending in the
# statement's one snapshot, so the two UPDATEs never meet. Its rows are the claimed steps
# (position NULL) and then each recorded outcome's position and new status.
FINISH_CLAIM = claim_statement(
    POD_CLAIM_ASSIGNMENTS,
    POD_CLAIM_RETURNING,
    then=f", {_outcome_ctes(4)}",
    select=f"""SELECT NULL::bigint AS position, NULL::text AS status, claimed.* FROM claimed
        UNION ALL
        SELECT position, status, {", ".join(["NULL"] * 12)} FROM ended""",
)


def _outcome_arguments(outcomes: Sequence[StepOutcome]) -> list[list[Any]]:
    """The eight arrays _OUTCOME_CTES reads, one element per outcome."""
    return [
        [o.step.step_id for o in outcomes],
        [o.step.attempt for o in outcomes],
        [o.pod_id for o in outcomes],
        [o.error is None for o in outcomes],
        # A result arrives serialised already, where the handler returned it.
        [o.result_json if o.error is None else None for o in outcomes],
        [json_text(o.error) if o.error is not None else None for o in outcomes],
        [o.backoff_s for o in outcomes],
        [o.retryable for o in outcomes],
    ]


def _statuses(rows: Sequence[Any], count: int) -> list[str | None]:
    """Per outcome in order, its step's new status; None where the write was fenced out."""
    statuses = {row["position"]: row["status"] for row in rows}
    return [statuses.get(position) for position in range(1, count + 1)]


class OutcomeClaimPort(Protocol):
    """The claim loop's, for outcomes written with the claim of the slots they free."""

    async def step_finish_claim(
        self, outcomes: Sequence[StepOutcome], pod_id: str, step_types: list[str], limit: int
    ) -> tuple[list[str | None], list[ClaimedStep]]:
        """`OutcomePort.step_finish_many` and `ClaimPort.step_claim_batch` in one
        transaction, whose commit waits for its flush (the outcomes are durable)."""


class StepOutcomeQueries(PoolHolder):
    """The outcome writes of a pod's executions."""

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
            rows = await connection.fetch(FINISH, *_outcome_arguments(outcomes))
        return _statuses(rows, len(outcomes))

    async def step_finish_claim(
        self, outcomes: Sequence[StepOutcome], pod_id: str, step_types: list[str], limit: int
    ) -> tuple[list[str | None], list[ClaimedStep]]:
        """`step_finish_many` and `step_claim_batch` in one statement: the outcomes, and up
        to `limit` steps claimed for the slots they freed, on one round trip and one commit.

        On the claim loop's own connection, which plans it once (store.connection
        PLANNED_ONCE_SETTINGS). The commit waits for its WAL flush, as every outcome
        write's does (the outcome is durable before it is acknowledged); the claim rides
        on it, so it is never lost in a crash. An outcome whose claim was lost is fenced
        out as ever, and the claim sees the finished steps as they were (claimed), so it
        never takes one of them back.
        """
        if not outcomes:
            return [], []
        async with self._planned_once() as connection:
            rows = await connection.fetch(
                FINISH_CLAIM, pod_id, step_types, limit, *_outcome_arguments(outcomes)
            )
        claimed = [
            {key: value for key, value in row.items() if key not in ("position", "status")}
            for row in rows
            if row["position"] is None
        ]
        return _statuses(rows, len(outcomes)), claimed_steps(claimed)
