-- Periodic schedules (issue 16): the leader fires each due tick as a step whose client key
-- is 'schedule:<name>:<tick time>', so a tick fires at most once whoever fires it.
-- next_fire_ts is the next tick to fire (NULL while paused); last_* describe the latest fire.
-- source: 'file' for schedules reconciled from FLEETQ_SCHEDULES_FILE, 'api' otherwise.
CREATE TABLE fleetq_schedules (
    name             text PRIMARY KEY,
    cron             text,
    interval_seconds integer,
    timezone         text NOT NULL DEFAULT 'UTC',
    step_type        text NOT NULL,
    args             jsonb NOT NULL DEFAULT '{}',
    metadata         jsonb NOT NULL DEFAULT '{}',
    priority         integer NOT NULL DEFAULT 0,
    max_retries      integer NOT NULL DEFAULT 3,
    overlap          text NOT NULL DEFAULT 'allow' CHECK (overlap IN ('allow', 'skip')),
    catch_up         text NOT NULL DEFAULT 'skip' CHECK (catch_up IN ('skip', 'once')),
    paused           boolean NOT NULL DEFAULT false,
    source           text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'file')),
    next_fire_ts     timestamptz,
    last_fire_ts     timestamptz,
    last_step_id     text,
    created_ts       timestamptz NOT NULL DEFAULT now(),
    updated_ts       timestamptz NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (interval_seconds IS NULL)),
    CHECK (interval_seconds IS NULL OR interval_seconds >= 1)
);
-- The leader's probe for due schedules.
CREATE INDEX fleetq_schedules_due_idx ON fleetq_schedules (next_fire_ts) WHERE NOT paused;
