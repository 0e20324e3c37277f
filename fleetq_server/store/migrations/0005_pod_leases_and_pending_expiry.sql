-- Each pod declares its own lease: with every heartbeat it sets expires_at to now() plus its
-- own FLEETQ_DEAD_POD_THRESHOLD, and the leader judges it by that, not by the leader's own
-- threshold. Pods started with different liveness settings (a rolling update changing them)
-- then coexist. NULL on rows written by versions before this one: those are judged by the
-- reader's threshold, as before, until their pod re-registers.
ALTER TABLE fleetq_pods ADD COLUMN expires_at timestamptz;

-- Optional expiry of a pending step (FLEETQ_PENDING_EXPIRY or the submit's own value): past
-- it, the step is never claimed and the leader fails it with error type `expired`.
ALTER TABLE fleetq_steps ADD COLUMN pending_expires_at timestamptz;

-- The leader's expiry pass reads the oldest deadlines first and stops at now(): without
-- this index it would read every pending step (hundreds of thousands, when types nobody
-- runs pile up) once per retention interval. Partial, so steps without an expiry, and every
-- step once claimed or finished, cost no index entry.
CREATE INDEX fleetq_steps_pending_expiry_idx ON fleetq_steps (pending_expires_at)
    WHERE status = 'pending' AND pending_expires_at IS NOT NULL;
