-- The claimer's next-due index (0006) halved the drain: its predicate (status = 'pending')
-- matched the claim's, so the planner picked it for the claim's pick of due steps, walking
-- steps by not_before_ts instead of the claim index. Measured with `python -m
-- benchmarks.run --quick --scenarios drain --drain-steps 10000`, 1 pod: 3f9b93c (before
-- 0006) 6,249 steps/s, c15a0ae (0006) 4,029, c15a0ae without this index 6,859.
--
-- Only steps that are not claimable yet interest step_next_due, and each of them has a
-- not_before_ts later than its created_ts (scheduled ahead, in retry backoff, requeued):
-- that narrower predicate keeps the index to those rows and out of the claim's reach, as
-- the claim's WHERE does not imply it. step_next_due states it to use the index.
DROP INDEX fleetq_steps_due_idx;
CREATE INDEX fleetq_steps_due_idx ON fleetq_steps (type, not_before_ts)
    WHERE status = 'pending' AND not_before_ts > created_ts;
