-- A batch copied part by part (store/step_copy.py) is inserted as its rows arrive.
--
-- COPY buffers rows and inserts them many at a time (heap_multi_insert) when its buffer
-- holds about 64 kB or the COPY ends. The pod sends a large SubmitBatch in parts while it
-- prepares the next, so PostgreSQL kept a few hundred rows back and inserted them only
-- after the last part: 4-6 ms of work after it, with nothing left to overlap (1,000-step
-- COPYs in parts of 100, PostgreSQL 15). PostgreSQL inserts row by row instead when the
-- default of a column the COPY leaves out is volatile. fleetq_now() is now() (the
-- transaction's start, as before) behind a volatile PL/pgSQL call, which the planner
-- cannot inline into a stable one: after the last part, 0.2-0.3 ms remained, for the same
-- backend CPU per row.
--
-- On not_before_ts, which both INSERT statements set themselves, so the single submits
-- never call it: on created_ts it cost them 2.6 us of backend CPU per step (+9%).
CREATE FUNCTION fleetq_now() RETURNS timestamptz LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN now();
END
$$;
ALTER TABLE fleetq_steps ALTER COLUMN not_before_ts SET DEFAULT fleetq_now();
