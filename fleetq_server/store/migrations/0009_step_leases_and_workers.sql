-- Leased claims (ClaimSteps): a step claimed by a worker outside the pods holds a lease
-- that ends at lease_expires_at unless the worker extends it. NULL for a pod's claim,
-- which its pod's liveness covers instead: recovery leaves leased steps alone, and the
-- leader requeues (or fails, as `lease_expired`) those whose lease has ended.
ALTER TABLE fleetq_steps ADD COLUMN lease_expires_at timestamptz;

-- The leader's expiry pass and its next-expiry timer read leases by their end, and only
-- leased claims have an entry.
CREATE INDEX fleetq_steps_lease_idx ON fleetq_steps (lease_expires_at)
    WHERE status = 'claimed' AND lease_expires_at IS NOT NULL;

-- Remote workers as last seen by a claim or a lease extension (/admin/queue). Their
-- in-flight counts come from the steps they hold (fleetq_steps_claimed_by_idx).
CREATE TABLE fleetq_workers (
    worker_id    text        PRIMARY KEY,
    types        text[]      NOT NULL,
    last_seen_ts timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fleetq_workers_seen_idx ON fleetq_workers (last_seen_ts);
