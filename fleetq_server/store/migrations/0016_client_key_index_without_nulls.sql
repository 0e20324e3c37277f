-- The client key's UNIQUE constraint (0001) indexed every step, and most steps have no
-- key: each insert, and each claim and outcome (new row versions, never HOT: their status
-- is in other indexes), added a NULL entry that no lookup ever reads. A partial unique
-- index of the keyed steps keeps the guarantee (NULLs never collided) and drops that entry.
-- WAL per step on PostgreSQL 15, 5,000 unkeyed steps inserted, claimed and completed in
-- one statement each (pg_current_wal_lsn deltas): insert 561 -> 496 bytes, claim 448 ->
-- 381, completion 555 -> 489; 1,564 -> 1,366 for the step's life (-13%).
-- The insert names the predicate in its ON CONFLICT so PostgreSQL infers this index.
CREATE UNIQUE INDEX fleetq_steps_client_key_idx ON fleetq_steps (client_key)
    WHERE client_key IS NOT NULL;
ALTER TABLE fleetq_steps DROP CONSTRAINT fleetq_steps_client_key_key;
