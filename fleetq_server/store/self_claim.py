"""The receiving pod's claim of the steps it was just sent, made by their insert itself.

When the pod that receives a submit may claim (registered up), no step of its types is
waiting (pending and claimable) and no fleet-wide type limit covers the new steps, the
ordinary claim could take only new steps, in the order (priority DESC, created_ts,
step_id) it would apply, and all of them share the insert's created_ts. The insert then
writes up to `limit` of them straight as claimed by the pod: one statement and one
commit (flushed, as a submit's must be) instead of an insert, then a claim. When the gate
is shut, every new step is inserted pending and nothing is announced: the caller makes
the ordinary claim, which weighs the waiting steps and the limits, and then announces
what that left pending.
"""

from fleetq_server.store.notifications import NOTIFY_SUBMITTED

# $1: the steps as a JSON array (store.steps._step_row), $2: the receiving pod, $3: its
# types, $4: its free slots. Returns each inserted row (a repeated client key inserts
# none) with its status, a claimed one's columns for ClaimedStep, and whether the gate
# was open (`fast`).
_SELF_CLAIM_INSERT = """
    WITH received AS (
        SELECT n.*, COALESCE(n.run_at, now() + make_interval(secs => n.delay_s)) AS scheduled
        FROM jsonb_to_recordset($1::text::jsonb)
             AS n(step_id text, type text, args jsonb, metadata jsonb,
                  priority int, max_retries int, idempotency_key text,
                  client_key text, payload_hash text, pending_expiry_s float8,
                  run_at timestamptz, delay_s float8, traceparent text)
    ), gate AS MATERIALIZED (
        SELECT EXISTS (SELECT 1 FROM fleetq_pods WHERE pod_id = $2 AND status = 'up')
           -- the waiting steps of every type the pod runs: the claim would weigh them
           AND NOT EXISTS (
               SELECT 1 FROM unnest($3::text[]) AS wanted(type)
               CROSS JOIN LATERAL (
                   SELECT 1 FROM fleetq_steps
                   WHERE status = 'pending' AND type = wanted.type
                     AND not_before_ts <= now()
                     AND (pending_expires_at IS NULL OR pending_expires_at > now())
                   LIMIT 1
               ) AS waiting)
           AND NOT EXISTS (
               SELECT 1 FROM fleetq_type_limits
               WHERE type IN (SELECT type FROM received) AND type = ANY($3::text[]))
           AS fast
    ), ranked AS (
        SELECT r.*, eligible AND row_number() OVER (
                   PARTITION BY eligible ORDER BY r.priority DESC, r.step_id) <= $4 AS take
        FROM received AS r
        CROSS JOIN LATERAL (
            SELECT (SELECT fast FROM gate) AND r.type = ANY($3::text[])
                   AND r.scheduled IS NULL
                   AND (r.pending_expiry_s IS NULL OR r.pending_expiry_s > 0) AS eligible
        ) AS e
    ), written AS (
        INSERT INTO fleetq_steps (step_id, type, args, metadata, priority,
            max_retries, idempotency_key, client_key, payload_hash,
            pending_expires_at, run_at, not_before_ts, traceparent,
            status, claimed_by, claimed_ts, attempt)
        SELECT step_id, type, args, metadata, priority, max_retries,
               idempotency_key, client_key, payload_hash,
               COALESCE(scheduled, now()) + make_interval(secs => pending_expiry_s),
               scheduled, COALESCE(scheduled, now()), traceparent,
               CASE WHEN take THEN 'claimed' ELSE 'pending' END,
               CASE WHEN take THEN $2::text END,
               CASE WHEN take THEN now() END,
               CASE WHEN take THEN 1 ELSE 0 END
        FROM ranked
        {on_conflict}
        RETURNING step_id, type, status, args, metadata, priority, max_retries,
                  retry_count, attempt, idempotency_key, created_ts, not_before_ts,
                  claimed_ts
    ), inserted AS (
        -- announced here only when the gate was open; else by the caller, after its claim
        SELECT step_id, type FROM written
        WHERE status = 'pending' AND (SELECT fast FROM gate)
    ), notified AS ({notify})
    SELECT written.*, (SELECT fast FROM gate) AS fast
    FROM written CROSS JOIN (SELECT count(*) FROM notified) AS announced
"""
SELF_CLAIM_INSERT = _SELF_CLAIM_INSERT.format(
    on_conflict="ON CONFLICT (client_key) WHERE client_key IS NOT NULL DO NOTHING",
    notify=NOTIFY_SUBMITTED,
)
# Without client keys, no ON CONFLICT (as store.steps.INSERT_UNKEYED_STEPS).
SELF_CLAIM_UNKEYED_INSERT = _SELF_CLAIM_INSERT.format(on_conflict="", notify=NOTIFY_SUBMITTED)
