"""Attempt history: the SQL that records ended attempts, and a step read with them.

Each ended execution of a step is one entry of its history: number, pod or worker,
started, finished, outcome, error. Most are rows of fleetq_step_attempts (migration
0007), written by the statement that ended the execution; the one that finished the step
is kept by the step row itself (RECORD_REQUEUED_ATTEMPTS). The running execution is the
claimed step row's own (api/messages.py shows it as "running").
"""

import json

import asyncpg

from fleetq_server.store.records import AttemptRecord, StepRecord

# A step's ended attempts come with it, oldest first, from the attempts table's primary
# key: one probe per step in the same statement, no second round trip. (The error travels
# as text: asyncpg reads a record's fields in binary, past the text codec of jsonb.) The
# step's finished_ts completes the attempt its own row describes (`step_record`).
STEP_COLUMNS = """
    step_id, status, type, args, metadata, priority, max_retries, retry_count, claimed_by,
    attempt, idempotency_key, created_ts, last_update_ts, result, error, run_at, claimed_ts,
    cancel_requested_ts IS NOT NULL AS cancel_requested, finished_ts,
    ARRAY(SELECT ROW(a.attempt, a.pod_id, a.started_ts, a.finished_ts, a.outcome, a.error::text)
          FROM fleetq_step_attempts AS a WHERE a.step_id = fleetq_steps.step_id
          ORDER BY a.attempt) AS attempts
"""

# Ends attempts: INSERTs one row per step a statement's `ended` CTE returns, with the step's
# id, the ended attempt and its pod, when it was claimed, its outcome word and error (jsonb).
RECORD_ATTEMPTS = """
    INSERT INTO fleetq_step_attempts (step_id, attempt, pod_id, started_ts, finished_ts,
                                      outcome, error)
    SELECT step_id, attempt, pod_id, claimed_ts, now(), outcome, error FROM ended
"""

# The outcome statements (a pod's and a worker's) write a row only for an attempt whose
# step goes back to pending, to be claimed again. An attempt that finishes its step
# (completed, failed or cancelled) is described by the step row itself, which keeps the
# attempt's number, claimed_by, claimed_ts, finished_ts, status and error: `step_record`
# reads it from there, and RetryStep, the one write that later overwrites those columns,
# turns it into a row first (store/step_lifecycle.py). A drain of successes thus writes no
# attempt rows: with one per outcome (heap tuple and primary-key entry), the outcome
# statement wrote 41% more WAL, 990 bytes per step against 701, and a whole step (insert,
# claim, outcome) 13% more (benchmarks/outcome_wal.py, README "Performance").
RECORD_REQUEUED_ATTEMPTS = f"{RECORD_ATTEMPTS} WHERE status = 'pending'"

# Step statuses that end a step: a step row in one of them with claimed_by set describes
# the attempt that ended it (a step finished while pending never had claimed_by set).
_FINISHED = frozenset(("completed", "failed", "cancelled"))

# RetryStep overwrites the columns that describe the attempt that finished a step, so it
# writes that attempt's row first, from the step row as it stood (`finished`, its
# columns named as the step's), unless one holds the attempt already (recovery and lease
# expiry write theirs).
RECORD_FINISHING_ATTEMPT = """
    INSERT INTO fleetq_step_attempts (step_id, attempt, pod_id, started_ts, finished_ts,
                                      outcome, error)
    SELECT step_id, attempt, claimed_by, claimed_ts, finished_ts, status, error
    FROM finished WHERE claimed_by IS NOT NULL
    ON CONFLICT (step_id, attempt) DO NOTHING
"""


def step_record(row: asyncpg.Record) -> StepRecord:
    """A row of STEP_COLUMNS as a record: its attempt rows, then the attempt that finished
    the step when no row holds it (RECORD_REQUEUED_ATTEMPTS), read from the step row."""
    fields = dict(row)
    finished_ts = fields.pop("finished_ts")
    attempts = [
        AttemptRecord(
            attempt=number,
            pod_id=pod_id,
            started_ts=started,
            finished_ts=finished,
            outcome=outcome,
            error=None if error is None else json.loads(error),
        )
        for number, pod_id, started, finished, outcome, error in fields["attempts"]
    ]
    last = fields["attempt"]
    if (
        fields["status"] in _FINISHED
        and fields["claimed_by"] is not None
        and not (attempts and attempts[-1].attempt == last)
    ):
        attempts.append(
            AttemptRecord(
                attempt=last,
                pod_id=fields["claimed_by"],
                started_ts=fields["claimed_ts"],
                finished_ts=finished_ts,
                outcome=fields["status"],
                error=fields["error"],
            )
        )
    fields["attempts"] = tuple(attempts)
    return StepRecord(**fields)
