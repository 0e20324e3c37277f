"""SQL for recovery: mark stale pods down and requeue (or fail) the steps they held.

A cycle is one transaction under a transaction-scoped advisory lock, so cycles never
overlap across pods, and every UPDATE re-checks its own conditions, so running a cycle
twice changes nothing the second time.
"""

import secrets
import time
from datetime import datetime

import asyncpg

from fleetq_server import errors
from fleetq_server.store.connection import PoolHolder
from fleetq_server.store.liveness import pod_is_live, pod_is_stale
from fleetq_server.store.notifications import SUBMIT_CHANNEL
from fleetq_server.store.records import RecoveryOutcome, RecoveryRecord, RecoveryRecordPosition
from fleetq_server.store.rules import CANCEL_REQUESTED, RETRIES_LEFT, outcome_assignments
from fleetq_server.store.step_attempts import RECORD_ATTEMPTS

# Arbitrary but fixed: identifies "FLEET-Q recovery cycle" among advisory locks.
RECOVERY_LOCK_KEY = 0x466C_5130_0002

# A claim is held only by the live incarnation of its pod that made it: a pod restarted
# under the same FLEETQ_POD_ID re-registers with a new birth_ts, and whatever its previous
# process had claimed before that is orphaned, not held by the newcomer, which knows nothing
# of it. (claimed_ts is NULL only on rows claimed before migration 0002.) A worker's leased
# claim is no pod's: its lease decides (store/step_leases.py), not any pod's liveness.
_NOT_HELD_BY_LIVE_POD = f"""
    s.status = 'claimed' AND s.lease_expires_at IS NULL AND NOT EXISTS (
        SELECT 1 FROM fleetq_pods AS p
        WHERE p.pod_id = s.claimed_by AND {pod_is_live("p")}
          AND p.birth_ts <= coalesce(s.claimed_ts, p.birth_ts))
"""


def new_cycle_id() -> str:
    """Unique and sortable: milliseconds plus randomness, never second-resolution."""
    return f"recovery_{time.time_ns() // 1_000_000}_{secrets.token_hex(3)}"


# Longest a cycle's transaction may sit idle between its statements (they follow each other
# at once; only a frozen leader waits this long).
CYCLE_IDLE_LIMIT = "10s"

# The steps of one cycle, each a statement on the cycle's transaction. `dead_threshold_s`
# is $1 in every liveness condition (store.liveness: rows without a lease fall back to it).


async def _take_cycle_lock(connection: asyncpg.Connection) -> None:
    """Hold the cycle lock until the transaction ends, or refuse: cycles never overlap.

    A leader frozen mid-cycle (SIGSTOP, a stuck event loop) would hold the lock, and so
    stop every other pod's recovery, for as long as its connection stays open: the server
    ends the session once the transaction idles past CYCLE_IDLE_LIMIT instead.
    """
    locked = await connection.fetchval(
        "SELECT set_config('idle_in_transaction_session_timeout', $2, true) IS NOT NULL"
        " AND pg_try_advisory_xact_lock($1)",
        RECOVERY_LOCK_KEY,
        CYCLE_IDLE_LIMIT,
    )
    if not locked:
        raise errors.RecoveryInProgressError("a recovery cycle is already in progress")


async def _check_leader(
    connection: asyncpg.Connection, leader_pod_id: str, dead_threshold_s: float
) -> None:
    """Refuse unless `leader_pod_id` leads now, under the lock."""
    leader = await connection.fetchval(
        f"""
        SELECT pod_id FROM fleetq_pods AS p WHERE {pod_is_live("p")}
        ORDER BY birth_ts, pod_id LIMIT 1
        """,
        dead_threshold_s,
    )
    if leader != leader_pod_id:
        raise errors.PermissionDeniedError(
            f"recovery runs only on the leader; current leader is {leader or 'none'}"
        )


# A recorded cycle's outcome columns, its duration as `ms`.
_RECORDED_OUTCOME = """
    cycle_id, dead_pods, requeued_steps, terminal_steps, orphaned_steps_found,
    (extract(epoch FROM finished_ts - started_ts) * 1000)::int AS ms
"""


def _recorded_outcome(row: asyncpg.Record) -> RecoveryOutcome:
    """The outcome of a recorded cycle, read with _RECORDED_OUTCOME."""
    return RecoveryOutcome(
        cycle_id=row["cycle_id"],
        dead_pods=list(row["dead_pods"]),
        orphaned_steps_found=row["orphaned_steps_found"],
        requeued_steps=list(row["requeued_steps"]),
        terminal_steps=list(row["terminal_steps"]),
        duration_ms=row["ms"],
    )


async def _recent_cycle(connection: asyncpg.Connection, min_gap_s: float) -> RecoveryOutcome | None:
    """The outcome of a cycle that finished less than `min_gap_s` ago, if any."""
    recent = await connection.fetchrow(
        f"""
        SELECT {_RECORDED_OUTCOME}
        FROM fleetq_recovery_cycles
        WHERE finished_ts > now() - make_interval(secs => $1)
        ORDER BY finished_ts DESC LIMIT 1
        """,
        min_gap_s,
    )
    return None if recent is None else _recorded_outcome(recent)


async def _find_stale_pods(
    connection: asyncpg.Connection, dead_threshold_s: float
) -> list[asyncpg.Record]:
    """Pods still marked up whose lease has ended (dry run: nothing changes)."""
    rows: list[asyncpg.Record] = await connection.fetch(
        f"""
        SELECT pod_id FROM fleetq_pods AS p WHERE {pod_is_stale("p")}
        ORDER BY pod_id
        """,
        dead_threshold_s,
    )
    return rows


async def _mark_stale_pods_down(
    connection: asyncpg.Connection, dead_threshold_s: float
) -> list[asyncpg.Record]:
    """Mark every pod still up whose lease has ended down; returns their ids."""
    rows: list[asyncpg.Record] = await connection.fetch(
        f"""
        UPDATE fleetq_pods AS p SET status = 'down', current_capacity = 0
        WHERE {pod_is_stale("p")}
        RETURNING pod_id
        """,
        dead_threshold_s,
    )
    return rows


async def _find_orphans(
    connection: asyncpg.Connection, dead_threshold_s: float
) -> list[asyncpg.Record]:
    """Claimed steps no live pod holds, with the status retry-or-fail would give them
    (dry run: nothing changes)."""
    rows: list[asyncpg.Record] = await connection.fetch(
        f"""
        SELECT s.step_id, s.type,
               CASE WHEN {CANCEL_REQUESTED} THEN 'cancelled'
                    WHEN {RETRIES_LEFT} THEN 'pending' ELSE 'failed' END AS status
        FROM fleetq_steps AS s WHERE {_NOT_HELD_BY_LIVE_POD}
        ORDER BY s.step_id
        """,
        dead_threshold_s,
    )
    return rows


async def _requeue_or_fail_orphans(
    connection: asyncpg.Connection, dead_threshold_s: float
) -> list[asyncpg.Record]:
    """Apply retry-or-fail to every claimed step no live pod holds, recording the lost pod
    as the error; returns each step's id, new status and type."""
    rows: list[asyncpg.Record] = await connection.fetch(
        f"""
        WITH orphans AS (
            SELECT s.step_id, s.attempt, s.claimed_by FROM fleetq_steps AS s
            WHERE {_NOT_HELD_BY_LIVE_POD}
            FOR UPDATE
        ), ended AS (
            UPDATE fleetq_steps AS s
            SET {outcome_assignments("FALSE")},
                not_before_ts = now(),
                last_update_ts = now(),
                error = jsonb_build_object(
                    'type', 'PodLost',
                    'message', 'pod ' || s.claimed_by || ' was lost while running '
                        || 'the step; ' || CASE WHEN {CANCEL_REQUESTED} THEN 'cancelled'
                        WHEN {RETRIES_LEFT} THEN 'requeued' ELSE 'no retries left' END)
            FROM orphans
            WHERE s.step_id = orphans.step_id AND s.attempt = orphans.attempt
              AND s.status = 'claimed'
            RETURNING s.step_id, s.status, s.type, s.attempt, orphans.claimed_by AS pod_id,
                      s.claimed_ts, 'pod_lost' AS outcome, s.error
        ), recorded AS ({RECORD_ATTEMPTS})
        SELECT step_id, status, type FROM ended
        """,
        dead_threshold_s,
    )
    return rows


async def _record_cycle(
    connection: asyncpg.Connection,
    outcome: RecoveryOutcome,
    leader_pod_id: str,
    trigger: str,
    started_ts: datetime,
) -> None:
    """Keep the durable record of a cycle that ran."""
    await connection.execute(
        """
        INSERT INTO fleetq_recovery_cycles (cycle_id, leader_pod_id, trigger, started_ts,
            finished_ts, dead_pods, requeued_steps, terminal_steps, orphaned_steps_found)
        -- finished_ts: the column default now() is the transaction's start, which would
        -- put every cycle's end before its start.
        VALUES ($1, $2, $3, $4, clock_timestamp(), $5, $6, $7, $8)
        """,
        outcome.cycle_id,
        leader_pod_id,
        trigger,
        started_ts,
        outcome.dead_pods,
        outcome.requeued_steps,
        outcome.terminal_steps,
        outcome.orphaned_steps_found,
    )


class RecoveryQueries(PoolHolder):
    """Recovery cycles and their durable record."""

    async def recovery_run(
        self,
        leader_pod_id: str,
        dead_threshold_s: float,
        *,
        dry_run: bool,
        trigger: str,
        min_gap_s: float = 0.0,
    ) -> tuple[RecoveryOutcome, bool]:
        """Run (or with `dry_run`, simulate) one cycle as `leader_pod_id`.

        Returns (outcome, ran). When a cycle finished less than `min_gap_s` ago, that
        cycle's outcome is returned with ran=False instead of running again.
        Raises RecoveryInProgressError when another cycle holds the lock and
        PermissionDeniedError when `leader_pod_id` is not the leader.
        """
        started = time.monotonic()
        async with self._transaction() as connection:
            await _take_cycle_lock(connection)
            await _check_leader(connection, leader_pod_id, dead_threshold_s)
            if min_gap_s > 0:
                recent = await _recent_cycle(connection, min_gap_s)
                if recent is not None:
                    return recent, False
            started_ts: datetime = await connection.fetchval("SELECT clock_timestamp()")
            if dry_run:
                dead = await _find_stale_pods(connection, dead_threshold_s)
                orphans = await _find_orphans(connection, dead_threshold_s)
            else:
                dead = await _mark_stale_pods_down(connection, dead_threshold_s)
                orphans = await _requeue_or_fail_orphans(connection, dead_threshold_s)
            outcome = RecoveryOutcome(
                cycle_id=new_cycle_id(),
                dead_pods=sorted(row["pod_id"] for row in dead),
                orphaned_steps_found=len(orphans),
                requeued_steps=sorted(r["step_id"] for r in orphans if r["status"] == "pending"),
                terminal_steps=sorted(r["step_id"] for r in orphans if r["status"] != "pending"),
                duration_ms=round((time.monotonic() - started) * 1000),
                step_types={r["step_id"]: r["type"] for r in orphans},
            )
            if not dry_run:
                if outcome.requeued_steps:
                    # Wake idle pods now rather than at their next poll.
                    await connection.execute("SELECT pg_notify($1, '')", SUBMIT_CHANNEL)
                await _record_cycle(connection, outcome, leader_pod_id, trigger, started_ts)
        return outcome, True

    async def recovery_record_list_page(
        self, after: RecoveryRecordPosition | None, limit: int
    ) -> list[RecoveryRecord]:
        """Up to `limit` recorded cycles, newest first (finished_ts, then cycle_id,
        descending), strictly after `after` in that order when it is given."""
        # Two statements rather than "$1 IS NULL OR ...": a generic plan of that would
        # not walk the index from the token.
        condition = "TRUE"
        params: list[object] = [limit]
        if after is not None:
            condition = "(finished_ts, cycle_id) < ($2, $3)"
            params += [after.finished_ts, after.cycle_id]
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"""
                SELECT leader_pod_id, trigger, started_ts, finished_ts, {_RECORDED_OUTCOME}
                FROM fleetq_recovery_cycles WHERE {condition}
                ORDER BY finished_ts DESC, cycle_id DESC
                LIMIT $1
                """,
                *params,
            )
        return [
            RecoveryRecord(
                _recorded_outcome(row),
                row["leader_pod_id"],
                row["trigger"],
                row["started_ts"],
                row["finished_ts"],
            )
            for row in rows
        ]
