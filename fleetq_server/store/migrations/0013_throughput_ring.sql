-- Steps completed and failed per minute (GetThroughput), kept as steps finish so that
-- reading the last two hours never scans fleetq_steps.
--
-- A ring of 120 minute slots: slot = minutes since the epoch mod 120. A slot row remembers
-- which minute it holds; the first write of a newer minute resets it, so the ring needs no
-- pruning, and readers keep only rows whose minute lies in the window they ask for. Each
-- backend writes its own stripe of a slot (pg_backend_pid() % 16, as the finished counts
-- do): a row lock is held until commit, and one row per minute would queue every finishing
-- statement in the fleet behind the previous one's commit. Readers sum the stripes.
CREATE TABLE fleetq_throughput (
    slot      integer     NOT NULL CHECK (slot >= 0 AND slot < 120),
    stripe    integer     NOT NULL,
    minute_ts timestamptz NOT NULL,
    completed bigint      NOT NULL,
    failed    bigint      NOT NULL,
    PRIMARY KEY (slot, stripe)
);

-- Add one statement's finished steps to this backend's stripe of the current minute (the
-- transaction's now(), the time the store's statements stamp finished_ts with). A write for
-- a minute older than the one the row holds (a transaction open for two hours) is dropped
-- rather than overwrite the newer minute: it lies outside every window anyway.
CREATE FUNCTION fleetq_throughput_add(completed_n bigint, failed_n bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- PL/pgSQL, not SQL: its plan is cached for the session, not re-made on every call.
    INSERT INTO fleetq_throughput AS t (slot, stripe, minute_ts, completed, failed)
    SELECT (extract(epoch FROM m.minute_ts)::bigint / 60 % 120)::integer,
           pg_backend_pid() % 16, m.minute_ts, completed_n, failed_n
    FROM (SELECT date_trunc('minute', now()) AS minute_ts) AS m
    ON CONFLICT (slot, stripe) DO UPDATE SET
        completed = CASE WHEN t.minute_ts = EXCLUDED.minute_ts
                         THEN t.completed + EXCLUDED.completed ELSE EXCLUDED.completed END,
        failed = CASE WHEN t.minute_ts = EXCLUDED.minute_ts
                      THEN t.failed + EXCLUDED.failed ELSE EXCLUDED.failed END,
        minute_ts = EXCLUDED.minute_ts
    WHERE t.minute_ts <= EXCLUDED.minute_ts;
END
$$;

-- The finished-counts trigger (0003, 0007) already aggregates every UPDATE statement's
-- transition tables into per-status deltas; the throughput takes its completed and failed
-- deltas from that same aggregate (one query), so a statement pays one more upsert, not
-- another pass over its rows.
-- A statement that finishes nothing (a claim) returns before either write.
--
-- A step enters completed or failed once per statement that finishes it, and no statement
-- both finishes steps and takes others out of the same status (RetryStep moves failed
-- steps back to pending and finishes none), so a status's net delta, when positive, is
-- what the statement finished.
--
-- Lock order: within a statement, the throughput row before the counts rows, so two
-- finishing statements on one stripe queue on the throughput row before either takes a
-- counts row. No store transaction ends steps in more than one statement, so none holds
-- counts rows while it waits for a throughput row.
CREATE OR REPLACE FUNCTION fleetq_finished_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    statuses text[];
    types    text[];
    deltas   integer[];
    completed_n bigint;
    failed_n    bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM fleetq_finished_counts_add(ARRAY[NEW.status], ARRAY[NEW.type], ARRAY[1]);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM fleetq_finished_counts_add(array_agg(status), array_agg(type), array_agg(-1))
        FROM old_rows WHERE status IN ('completed', 'failed', 'cancelled');
    ELSE
        SELECT array_agg(status), array_agg(type), array_agg(delta),
               coalesce(sum(delta) FILTER (WHERE status = 'completed'), 0),
               coalesce(sum(delta) FILTER (WHERE status = 'failed'), 0)
        INTO statuses, types, deltas, completed_n, failed_n
        FROM (SELECT status, type, -1 AS delta FROM old_rows
              UNION ALL
              SELECT status, type, 1 FROM new_rows) AS changed
        WHERE status IN ('completed', 'failed', 'cancelled');
        IF statuses IS NULL THEN
            RETURN NULL;
        END IF;
        IF completed_n > 0 OR failed_n > 0 THEN
            -- A negative delta (RetryStep) is no throughput: only what a statement added.
            PERFORM fleetq_throughput_add(greatest(completed_n, 0), greatest(failed_n, 0));
        END IF;
        PERFORM fleetq_finished_counts_add(statuses, types, deltas);
    END IF;
    RETURN NULL;
END
$$;

-- The last two hours' finished steps, so the series is whole right after the upgrade
-- (one read through the finished-steps index). The lock keeps out writers until this
-- migration commits: a step finished meanwhile would otherwise be counted by neither the
-- backfill nor the new trigger body.
LOCK TABLE fleetq_steps IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO fleetq_throughput (slot, stripe, minute_ts, completed, failed)
SELECT (extract(epoch FROM minute_ts)::bigint / 60 % 120)::integer, 0, minute_ts,
       count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed')
FROM (SELECT date_trunc('minute', finished_ts) AS minute_ts, status FROM fleetq_steps
      WHERE status IN ('completed', 'failed', 'cancelled')
        AND finished_ts >= date_trunc('minute', now()) - interval '119 minutes') AS finished
GROUP BY minute_ts
HAVING count(*) FILTER (WHERE status IN ('completed', 'failed')) > 0;

-- ListRecoveryCycles walks the cycles newest first by (finished_ts, cycle_id), keyset pages
-- as a row comparison; retention's "finished before" reads the same index's first column.
CREATE INDEX fleetq_recovery_cycles_listed_idx ON fleetq_recovery_cycles (finished_ts, cycle_id);
DROP INDEX fleetq_recovery_cycles_finished_idx;
