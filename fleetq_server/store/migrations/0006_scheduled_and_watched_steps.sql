-- Scheduled submits: the submit's own time to run, kept for GetStepStatus (not_before_ts,
-- which the claim obeys, also moves with retry backoff). NULL for a step submitted to run
-- at once.
ALTER TABLE fleetq_steps ADD COLUMN run_at timestamptz;

-- The claimer's next due time: the earliest future not_before_ts of a pending step of each
-- of its types, one index descent per type (step_next_due). Without it the probe would read
-- every pending step of the type through the claim index.
CREATE INDEX fleetq_steps_due_idx ON fleetq_steps (type, not_before_ts) WHERE status = 'pending';

-- Steps someone is watching (WatchStep), one row per (step, pod serving the watch). Writers
-- notify only changes of these steps, so with no watcher a change costs one probe of an
-- empty table. Rows go when the pod's last watcher of the step leaves, or with the pod row.
CREATE TABLE fleetq_step_watches (
    step_id text NOT NULL,
    pod_id  text NOT NULL REFERENCES fleetq_pods (pod_id) ON DELETE CASCADE,
    PRIMARY KEY (step_id, pod_id)
);

-- Every UPDATE of steps, whichever code path makes it (claim, outcome, release, recovery,
-- and any later writer), notifies the changed steps that are watched: one NOTIFY per
-- statement listing their ids, comma-separated, or '' ("re-read every watched step") when
-- the list would not fit a notification's payload. The NEW TABLE is the one the finished
-- counts trigger already captures (PostgreSQL shares a table's transition tables between
-- its triggers), so this adds a call and, with no watcher, one probe.
CREATE FUNCTION fleetq_watched_steps_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM fleetq_step_watches) THEN
        RETURN NULL;
    END IF;
    SELECT string_agg(DISTINCT changed.step_id, ',') INTO ids
    FROM changed_rows AS changed
    WHERE EXISTS (SELECT 1 FROM fleetq_step_watches AS w WHERE w.step_id = changed.step_id);
    IF ids IS NOT NULL THEN
        PERFORM pg_notify('fleetq_step_changed', CASE WHEN length(ids) <= 7000 THEN ids ELSE '' END);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER fleetq_watched_steps_update AFTER UPDATE ON fleetq_steps
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fleetq_watched_steps_notify();
