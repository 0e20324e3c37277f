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

-- Fleet-wide limits per step type (issue 16), enforced by the claim statement. A claim of a
-- limited type locks its row here first, so claims of that type are serialised across pods;
-- then fleetq_claimed_count, a VOLATILE plpgsql function and so a fresh snapshot taken after
-- the lock, counts the claims committed before it, and the claim takes at most the room
-- left. Claims of types without a row lock nothing and count nothing.
-- max_concurrency: claimed steps of the type, fleet-wide. rate_per_second and burst: a token
-- bucket of claims (starts) kept in the row: `tokens` as of `tokens_ts`.
CREATE TABLE fleetq_type_limits (
    type             text PRIMARY KEY,
    max_concurrency  integer CHECK (max_concurrency >= 0),
    rate_per_second  double precision CHECK (rate_per_second >= 0),
    burst            integer CHECK (burst >= 1),
    tokens           double precision NOT NULL DEFAULT 0,
    tokens_ts        timestamptz NOT NULL DEFAULT now(),
    source           text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'file')),
    updated_ts       timestamptz NOT NULL DEFAULT now(),
    CHECK (max_concurrency IS NOT NULL OR rate_per_second IS NOT NULL),
    CHECK ((rate_per_second IS NULL) = (burst IS NULL))
);

-- Claimed steps of one type now: read through the partial index of claimed steps (at most
-- the fleet's capacity of rows). plpgsql, never inlined, so it sees what committed before
-- the call, not the calling statement's older snapshot.
CREATE FUNCTION fleetq_claimed_count(step_type text) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN (SELECT count(*) FROM fleetq_steps WHERE status = 'claimed' AND type = step_type);
END;
$$;
