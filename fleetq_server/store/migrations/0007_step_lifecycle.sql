-- Issue 14: steps you can list, cancel and retry, with their attempt history.

-- ListSteps walks steps newest first, (created_ts, step_id) DESC, from a keyset page token
-- (`(created_ts, step_id) < (token)`), so every page is one descent and LIMIT + 1 entries.
-- Measured on the page query as the store sends it (EXPLAIN (ANALYZE, BUFFERS), PostgreSQL
-- 15, enable_bitmapscan off as on the pods' connections), 10,000,000 completed steps:
-- without an index every page is a Parallel Seq Scan and a top-N sort of the whole table,
-- 10,891 ms for the first page and 4,352 ms half way down; with one an Index Scan Backward
-- reading 51 entries, 0.13 ms (first page) and 0.23 ms half way down, whatever the depth.
-- Filters on type and the time range ride the same walk (a page of one type of 20: 1,014
-- rows read, 8.7 ms).
--
-- Claimed steps are left out: a claim rewrites its step, and an index of every status took
-- an entry at the claim as well as at the outcome. A drain's WAL per step (private server,
-- 10,000 steps claimed and finished 100 at a time): 1,541 bytes before this migration,
-- 2,129 with an index of every status and the attempt rows, 1,828 with the attempt rows
-- alone. Claimed steps (at most the fleet's capacity) are read from
-- fleetq_steps_claimed_by_idx and sorted (store/step_listing.py). Pending steps stay in,
-- as their own partial indexes are not in creation order: with only finished steps in it,
-- the first page of 1,000,000 steps behind 1,000 pending ones sorted those (10-25 ms).
CREATE INDEX fleetq_steps_listed_idx ON fleetq_steps (created_ts, step_id)
    WHERE status <> 'claimed';

-- "What failed?" is the listing operators need most, and failures are rare among finished
-- steps: with 1,000 failed steps, the oldest of the 10,000,000, `status=failed` walked the
-- index above past 9 million completed rows (6,787 ms; 2,307 ms for a deeper page). This
-- partial index holds only failed and cancelled steps: 0.43 ms and 0.41 ms. A step gets an
-- entry only when it fails or is cancelled, so a drain of successful steps pays nothing.
CREATE INDEX fleetq_steps_unsuccessful_idx ON fleetq_steps (created_ts, step_id)
    WHERE status IN ('failed', 'cancelled');

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
