-- Identifiers compare by their bytes (COLLATE "C"), not by the database's locale.
--
-- Every step inserted walks the btree indexes holding step_id (primary key, claim index,
-- listing index) and type; within one COPY or INSERT the leading created_ts ties, so each
-- descent compares step ids. Under a libc locale, even C.UTF-8 (the default of initdb
-- here and of the embedded server), each text comparison copies both strings and calls
-- strcoll; under "C" it is a memcmp. These columns hold ids, keys and type names, which
-- nobody sorts linguistically: ids and keys are ASCII (hex digits, a few punctuation
-- characters), so byte order is the order they had, and listing pages are unchanged.
--
-- Columns compared with one another across tables change together: PostgreSQL refuses
-- `=` between two columns of different collations ("could not determine which collation
-- to use"), and an index is used only for comparisons in its own collation. Parameters
-- and literals take the column's collation, so the store's statements need no change.
--
-- ALTER COLUMN ... TYPE with only the collation changed does not rewrite the table; it
-- rebuilds the indexes holding the column, under an ACCESS EXCLUSIVE lock for the
-- migration's transaction: 2.3 s for 1,000,000 finished steps (379 MB) on PostgreSQL 15 here.
ALTER TABLE fleetq_steps
    ALTER COLUMN step_id TYPE text COLLATE "C",
    ALTER COLUMN type TYPE text COLLATE "C",
    ALTER COLUMN claimed_by TYPE text COLLATE "C",
    ALTER COLUMN idempotency_key TYPE text COLLATE "C",
    ALTER COLUMN client_key TYPE text COLLATE "C";
ALTER TABLE fleetq_step_attempts
    ALTER COLUMN step_id TYPE text COLLATE "C",
    ALTER COLUMN pod_id TYPE text COLLATE "C";
ALTER TABLE fleetq_step_watches
    ALTER COLUMN step_id TYPE text COLLATE "C",
    ALTER COLUMN pod_id TYPE text COLLATE "C";
ALTER TABLE fleetq_pods ALTER COLUMN pod_id TYPE text COLLATE "C";
ALTER TABLE fleetq_workers ALTER COLUMN worker_id TYPE text COLLATE "C";
ALTER TABLE fleetq_finished_step_counts
    ALTER COLUMN status TYPE text COLLATE "C",
    ALTER COLUMN type TYPE text COLLATE "C";
ALTER TABLE fleetq_type_limits ALTER COLUMN type TYPE text COLLATE "C";
ALTER TABLE fleetq_schedules
    ALTER COLUMN step_type TYPE text COLLATE "C",
    ALTER COLUMN last_step_id TYPE text COLLATE "C";
