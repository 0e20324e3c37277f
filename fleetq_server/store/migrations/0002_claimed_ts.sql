-- When the current (or last) execution was claimed: with finished_ts this gives run time
-- and drain rates from the database clock alone.
ALTER TABLE fleetq_steps ADD COLUMN claimed_ts timestamptz;
