-- Issue 14: steps you can list, cancel and retry, with their attempt history.

-- ListSteps walks steps newest first, (created_ts, step_id) DESC, from a keyset page token
-- (`(created_ts, step_id) < (token)`), so every page is one descent and LIMIT + 1 entries.
-- Measured on the page query as the store sends it, 1,000,000 completed steps, PostgreSQL
-- 15, EXPLAIN (ANALYZE, BUFFERS): without this index every page is a Parallel Seq Scan and
-- a top-N sort of the whole table, 1,819 ms for the first page and 807 ms half way down;
-- with it an Index Scan Backward reading 51 entries, 0.75 ms (first page, cold) and 0.16 ms
-- half way down, whatever the depth. Filters on type, status and the time range ride the
-- same walk (a page of one type of 20: 1,014 rows read, 12 ms cold). It is the only
-- listing index: each one costs a drain an index entry per claim and per outcome.
CREATE INDEX fleetq_steps_created_idx ON fleetq_steps (created_ts, step_id);

-- CancelStep: a new terminal status, and the request a claimed step's pod must act on.
ALTER TABLE fleetq_steps DROP CONSTRAINT fleetq_steps_status_check;
ALTER TABLE fleetq_steps ADD CONSTRAINT fleetq_steps_status_check
    CHECK (status IN ('pending', 'claimed', 'completed', 'failed', 'cancelled'));
ALTER TABLE fleetq_steps ADD COLUMN cancel_requested_ts timestamptz;

-- Cancelled steps are finished steps: counted by the trigger-maintained counts (queue
-- statistics' cancelled_steps) and deleted by retention like completed and failed ones.
CREATE OR REPLACE FUNCTION fleetq_finished_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM fleetq_finished_counts_add(ARRAY[NEW.status], ARRAY[NEW.type], ARRAY[1]);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM fleetq_finished_counts_add(array_agg(status), array_agg(type), array_agg(-1))
        FROM old_rows WHERE status IN ('completed', 'failed', 'cancelled');
    ELSE
        PERFORM fleetq_finished_counts_add(array_agg(status), array_agg(type), array_agg(delta))
        FROM (SELECT status, type, -1 AS delta FROM old_rows
              UNION ALL
              SELECT status, type, 1 FROM new_rows) AS changed
        WHERE status IN ('completed', 'failed', 'cancelled');
    END IF;
    RETURN NULL;
END
$$;
CREATE INDEX fleetq_steps_finished_any_idx
    ON fleetq_steps (finished_ts) WHERE status IN ('completed', 'failed', 'cancelled');
DROP INDEX fleetq_steps_finished_idx;

-- Attempt history: one row per execution that ended, written by the statement that ended
-- it (an outcome, a recovery requeue or failure, a shutdown release), never by the claim:
-- the claim statement stays as it was, and the running attempt is read from the step row
-- itself (claimed_by, attempt, claimed_ts). Rows go with their step in retention's DELETE.
-- No foreign key: its per-row check would cost every outcome a lookup of the step it has
-- just updated. The primary key is the only index: GetStepStatus and ListSteps read a
-- step's attempts by step_id.
CREATE TABLE fleetq_step_attempts (
    step_id     text        NOT NULL,
    attempt     integer     NOT NULL,
    pod_id      text,
    started_ts  timestamptz,
    finished_ts timestamptz NOT NULL,
    -- completed, failed, cancelled, pod_lost or released
    outcome     text        NOT NULL,
    error       jsonb,
    PRIMARY KEY (step_id, attempt)
);
