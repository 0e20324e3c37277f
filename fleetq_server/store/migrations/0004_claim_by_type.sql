-- Claims look up each of the pod's step types on its own (a LATERAL scan per type), so a
-- backlog of types the pod does not run costs its claims nothing. The old index led with
-- priority: a claim for type A read past every pending step of any other type first.
CREATE INDEX fleetq_steps_claim_by_type_idx
    ON fleetq_steps (type, priority DESC, created_ts, step_id) WHERE status = 'pending';
DROP INDEX fleetq_steps_claim_idx;
