"""The one claim statement, shared by a pod's claim (store/steps.py) and a worker's leased
claim (store/step_leases.py): which steps, under the type limits, and how they commit."""

from collections.abc import Iterable
from typing import Any

from fleetq_server.store.records import ClaimedStep
from fleetq_server.store.type_limits import LIMIT_ROOM_CTES, LIMIT_SPEND_CTE

# The claim's choice of steps, shared by a pod's claim and a worker's leased claim ($1: the
# claiming pod, which must be registered up; $2: the types; $3: the limit), after the
# `room` CTE of LIMIT_ROOM_CTES. Each type is read from its own index range and the best
# `$3` of all are kept, so steps of other types are never scanned. (The rows a type's scan
# locked but the final LIMIT dropped are unlocked when the statement ends, still pending.)
# Types with a fleet-wide limit (store/type_limits.py) take at most the room their limit
# leaves, decided under their limit row's lock; other types lock nothing.
PICK_CLAIMABLE = """
    SELECT candidate.step_id
    FROM unnest($2::text[]) AS wanted(type)
    LEFT JOIN room ON room.type = wanted.type
    CROSS JOIN LATERAL (
        SELECT step_id, priority, created_ts FROM fleetq_steps
        WHERE status = 'pending' AND type = wanted.type
          AND not_before_ts <= now()
          AND (pending_expires_at IS NULL OR pending_expires_at > now())
        ORDER BY priority DESC, created_ts, step_id
        LIMIT LEAST($3, COALESCE(room.room, $3))
        FOR UPDATE SKIP LOCKED
    ) AS candidate
    WHERE EXISTS (SELECT 1 FROM fleetq_pods WHERE pod_id = $1 AND status = 'up')
    ORDER BY candidate.priority DESC, candidate.created_ts, candidate.step_id
    LIMIT $3
"""


# A claim's commit that does not wait for its WAL flush: `synchronous_commit` off for its
# own transaction only (set_config's `true`, as SET LOCAL), unless the claim involves a
# type with a fleet-wide limit. A crash can then lose the claim (the step is pending at its
# previous attempt again), which is harmless for a pod: the outcome of the execution it
# launched is fenced by (step, pod, attempt), so it either ends the claim that replaces the
# lost one under the same token (the executor refuses to run a token twice) or is fenced
# out, and the step is claimed again. A limited type's claims stay durable, since handlers
# running on lost claims would not count against its limit.
UNFLUSHED_CTE = """
    unflushed AS (
        SELECT set_config('synchronous_commit', 'off', true)
        WHERE NOT EXISTS (SELECT 1 FROM limited)
    )"""


def claim_statement(
    assignments: str,
    returning: str,
    before: str = "",
    *,
    unflushed: bool = False,
    then: str = "",
    select: str = "SELECT claimed.* FROM claimed",
) -> str:
    """The one claim, shared by a pod's claim and a worker's leased claim: the steps
    PICK_CLAIMABLE chooses become `claimed` at their next attempt with the extra SET
    `assignments`, the type limits' tokens are spent, and the claimed rows' `returning`
    columns (which must include s.type) are selected. `before` adds leading CTEs. With
    `unflushed` the commit does not wait for its WAL flush (UNFLUSHED_CTE): for pods'
    claims only, never a worker's lease, whose fence (step, attempt) names no holder.
    `then` adds trailing CTEs and `select` replaces the final SELECT."""
    # Joined to the claimed rows so that PostgreSQL evaluates it (a CTE nobody reads is
    # skipped); with nothing claimed there is nothing to commit fast.
    after, join = (f", {UNFLUSHED_CTE}", " LEFT JOIN unflushed ON true") if unflushed else ("", "")
    return f"""
        WITH {before}{LIMIT_ROOM_CTES}{after}, picked AS ({PICK_CLAIMABLE}), claimed AS (
            UPDATE fleetq_steps AS s
            SET status = 'claimed', attempt = s.attempt + 1, claimed_ts = now(),
                last_update_ts = now(), {assignments}
            FROM picked WHERE s.step_id = picked.step_id
            RETURNING {returning}
        ), {LIMIT_SPEND_CTE}{then}
        {select}{join}
        """


# A pod's claim (store.steps.step_claim_batch, store.step_outcomes.step_finish_claim): the
# step is the claiming pod's ($1), no worker's lease; the columns a ClaimedStep is read from.
POD_CLAIM_ASSIGNMENTS = "claimed_by = $1, lease_expires_at = NULL"
POD_CLAIM_RETURNING = """s.step_id, s.type, s.args, s.metadata, s.priority, s.max_retries,
    s.retry_count, s.attempt, s.idempotency_key, s.created_ts, s.not_before_ts, s.claimed_ts"""


def claimed_steps(rows: Iterable[Any]) -> list[ClaimedStep]:
    """A pod claim's rows (POD_CLAIM_RETURNING) as steps in claim order (priority DESC,
    created_ts, step id): the UPDATE returns them in no particular order."""
    claimed = [ClaimedStep(**dict(row)) for row in rows]
    claimed.sort(key=lambda step: (-step.priority, step.created_ts, step.step_id))
    return claimed
