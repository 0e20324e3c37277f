-- Counts of finished steps by (status, type), so queue statistics never scan the millions
-- of finished rows a busy queue keeps until retention deletes them. Pending and claimed
-- steps (the live work) are still counted from their partial indexes.
--
-- Triggers keep the counts in the same transaction as every change to fleetq_steps, whichever
-- code path makes it: statement-level ones for UPDATE and DELETE (a retention batch writes
-- its counters once, not per row), and for INSERT a row-level one whose WHEN clause skips
-- pending rows without calling anything, so submits pay nothing.
--
-- Each backend adds to its own stripe of rows (pg_backend_pid() % 16): a counter's row lock
-- is held until commit, so a single row per (status, type) would queue every completion in
-- the fleet behind the previous one's commit. Readers sum the stripes.
CREATE TABLE fleetq_finished_step_counts (
    status text    NOT NULL,
    type   text    NOT NULL,
    stripe integer NOT NULL,
    n      bigint  NOT NULL,
    PRIMARY KEY (status, type, stripe)
);

-- Add per-row deltas to this backend's stripe. Rows are locked in (status, type) order, in
-- one statement, so two statements sharing a stripe can never deadlock on each other.
CREATE FUNCTION fleetq_finished_counts_add(statuses text[], types text[], deltas integer[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fleetq_finished_step_counts AS c (status, type, stripe, n)
    SELECT t.status, t.type, pg_backend_pid() % 16, sum(t.delta)
    FROM unnest(statuses, types, deltas) AS t(status, type, delta)
    GROUP BY t.status, t.type
    HAVING sum(t.delta) <> 0
    ORDER BY t.status, t.type
    ON CONFLICT (status, type, stripe) DO UPDATE SET n = c.n + EXCLUDED.n;
END
$$;

-- One trigger function for the three events: each branch names only the transition tables
-- or row its event has (PL/pgSQL plans a statement when it first runs it).
CREATE FUNCTION fleetq_finished_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM fleetq_finished_counts_add(ARRAY[NEW.status], ARRAY[NEW.type], ARRAY[1]);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM fleetq_finished_counts_add(array_agg(status), array_agg(type), array_agg(-1))
        FROM old_rows WHERE status IN ('completed', 'failed');
    ELSE
        PERFORM fleetq_finished_counts_add(array_agg(status), array_agg(type), array_agg(delta))
        FROM (SELECT status, type, -1 AS delta FROM old_rows
              UNION ALL
              SELECT status, type, 1 FROM new_rows) AS changed
        WHERE status IN ('completed', 'failed');
    END IF;
    RETURN NULL;
END
$$;

-- The triggers first: CREATE TRIGGER locks out writers until this migration commits, so the
-- backfill below counts exactly the rows the triggers will not.
CREATE TRIGGER fleetq_finished_counts_insert AFTER INSERT ON fleetq_steps
    FOR EACH ROW WHEN (NEW.status IN ('completed', 'failed'))
    EXECUTE FUNCTION fleetq_finished_counts_track();
CREATE TRIGGER fleetq_finished_counts_update AFTER UPDATE ON fleetq_steps
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fleetq_finished_counts_track();
CREATE TRIGGER fleetq_finished_counts_delete AFTER DELETE ON fleetq_steps
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fleetq_finished_counts_track();

CREATE FUNCTION fleetq_finished_counts_reset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM fleetq_finished_step_counts;
    RETURN NULL;
END
$$;
CREATE TRIGGER fleetq_finished_counts_truncate AFTER TRUNCATE ON fleetq_steps
    FOR EACH STATEMENT EXECUTE FUNCTION fleetq_finished_counts_reset();

INSERT INTO fleetq_finished_step_counts (status, type, stripe, n)
SELECT status, type, 0, count(*) FROM fleetq_steps
WHERE status IN ('completed', 'failed')
GROUP BY status, type;
