-- Pods: one row per pod incarnation. Liveness is judged with the database clock only.
CREATE TABLE fleetq_pods (
    pod_id            text        PRIMARY KEY,
    birth_ts          timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_ts timestamptz NOT NULL DEFAULT now(),
    status            text        NOT NULL DEFAULT 'up' CHECK (status IN ('up', 'down')),
    current_capacity  integer     NOT NULL DEFAULT 0,
    max_capacity      integer     NOT NULL,
    meta              jsonb       NOT NULL DEFAULT '{}'
);

-- The leader is the live pod with the smallest (birth_ts, pod_id).
CREATE INDEX fleetq_pods_election_idx ON fleetq_pods (birth_ts, pod_id) WHERE status = 'up';

CREATE TABLE fleetq_steps (
    step_id          text        PRIMARY KEY,
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'claimed', 'completed', 'failed')),
    type             text        NOT NULL,
    args             jsonb       NOT NULL,
    metadata         jsonb       NOT NULL DEFAULT '{}',
    priority         integer     NOT NULL DEFAULT 0,
    max_retries      integer     NOT NULL DEFAULT 3,
    retry_count      integer     NOT NULL DEFAULT 0,
    -- Pod holding the claim, and the claim's fencing token: bumped on every claim, so a
    -- completion carrying an older attempt (from a pod presumed dead) matches no row.
    claimed_by       text,
    attempt          integer     NOT NULL DEFAULT 0,
    -- Handed to handlers; the client's de-duplication key when it supplied one.
    idempotency_key  text        NOT NULL,
    -- Client-supplied de-duplication key; NULLs never collide.
    client_key       text        UNIQUE,
    payload_hash     text        NOT NULL,
    created_ts       timestamptz NOT NULL DEFAULT now(),
    last_update_ts   timestamptz NOT NULL DEFAULT now(),
    -- Backoff: a pending step is not claimable before this time.
    not_before_ts    timestamptz NOT NULL DEFAULT now(),
    finished_ts      timestamptz,
    result           jsonb,
    error            jsonb
);

-- The claim path: pending steps in claim order. Partial, so finished steps cost nothing.
CREATE INDEX fleetq_steps_claim_idx
    ON fleetq_steps (priority DESC, created_ts, step_id) WHERE status = 'pending';
-- Recovery: steps held by a given pod.
CREATE INDEX fleetq_steps_claimed_by_idx ON fleetq_steps (claimed_by) WHERE status = 'claimed';
-- Retention: finished steps by age.
CREATE INDEX fleetq_steps_finished_idx
    ON fleetq_steps (finished_ts) WHERE status IN ('completed', 'failed');

-- A durable record of every recovery cycle that changed or inspected state.
CREATE TABLE fleetq_recovery_cycles (
    cycle_id        text        PRIMARY KEY,
    leader_pod_id   text        NOT NULL,
    trigger         text        NOT NULL CHECK (trigger IN ('automatic', 'manual')),
    started_ts      timestamptz NOT NULL,
    finished_ts     timestamptz NOT NULL DEFAULT now(),
    dead_pods       text[]      NOT NULL,
    requeued_steps  text[]      NOT NULL,
    terminal_steps  text[]      NOT NULL,
    orphaned_steps_found integer NOT NULL
);
CREATE INDEX fleetq_recovery_cycles_finished_idx ON fleetq_recovery_cycles (finished_ts);
