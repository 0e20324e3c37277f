"""Plain records the store reads and writes; the store never sees protobuf or HTTP."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class NewStep:
    """A validated step about to be inserted."""

    step_id: str
    type: str
    args: dict[str, Any]
    metadata: dict[str, Any]
    priority: int
    max_retries: int
    idempotency_key: str
    client_key: str | None
    payload_hash: str
    # Seconds it may wait pending before it fails as `expired`; None: never.
    pending_expiry_s: float | None = None
    # Scheduled submits: not claimable before `run_at`, or `delay_s` seconds after the
    # insert (database clock); at most one of the two is set.
    run_at: datetime | None = None
    delay_s: float | None = None


@dataclass(frozen=True, slots=True)
class InsertOutcome:
    """The step a submit resolved to; `created` is False for a de-duplicated repeat."""

    step_id: str
    created: bool


@dataclass(frozen=True, slots=True)
class StepRecord:
    """A step as stored."""

    step_id: str
    status: str
    type: str
    args: dict[str, Any]
    metadata: dict[str, Any]
    priority: int
    max_retries: int
    retry_count: int
    claimed_by: str | None
    attempt: int
    idempotency_key: str
    created_ts: datetime
    last_update_ts: datetime
    result: Any
    error: dict[str, str] | None
    # When the submit scheduled the step to run; None when it was to run at once.
    run_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClaimedStep:
    """A step this pod now holds; (step_id, pod_id, attempt) is its fencing token."""

    step_id: str
    type: str
    args: dict[str, Any]
    metadata: dict[str, Any]
    priority: int
    max_retries: int
    retry_count: int
    attempt: int
    idempotency_key: str
    created_ts: datetime
    # When the step last became claimable: submitted, backoff over, requeued or released.
    not_before_ts: datetime
    claimed_ts: datetime


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """How one execution ended: `error` None means success with `result_json`, the
    result already serialised (and checked) by `storable.storable_json`."""

    step: ClaimedStep
    pod_id: str
    result_json: str | None = None
    error: dict[str, str] | None = None
    # For a failure: seconds before the step may be claimed again.
    backoff_s: float = 0.0
    # For a failure: False fails the step at once, whatever retries it has left.
    retryable: bool = True


@dataclass(frozen=True, slots=True)
class PodRecord:
    """A pod row, with liveness judged by the database clock when it was read."""

    pod_id: str
    birth_ts: datetime
    last_heartbeat_ts: datetime
    status: str
    current_capacity: int
    max_capacity: int


@dataclass(frozen=True, slots=True)
class HeartbeatOutcome:
    """What a heartbeat learned: whether this pod is still registered up, and the leader."""

    alive: bool
    leader_pod_id: str | None


@dataclass(frozen=True, slots=True)
class LeaderView:
    """The election as the database sees it now."""

    checked_ts: datetime
    live_pods: list[PodRecord] = field(default_factory=list)

    @property
    def leader(self) -> PodRecord | None:
        """The eldest live pod (rows are ordered by birth_ts, pod_id)."""
        return self.live_pods[0] if self.live_pods else None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts for the queue statistics RPC."""

    counts_by_status: dict[str, int]
    pending_by_priority: dict[int, int]
    steps_by_type: dict[str, int]
    live_pods: list[PodRecord]


@dataclass(frozen=True, slots=True)
class RecoveryOutcome:
    """What a recovery cycle found and did (or, for a dry run, would do)."""

    cycle_id: str
    dead_pods: list[str]
    orphaned_steps_found: int
    requeued_steps: list[str]
    terminal_steps: list[str]
    duration_ms: int
    # step_id -> step type of the requeued and terminal steps (empty for a reported cycle).
    step_types: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LeasedStep:
    """A step leased to a worker outside the pods (ClaimSteps): its lease ends at
    `lease_expires_at` unless the worker extends it."""

    step_id: str
    type: str
    args: dict[str, Any]
    metadata: dict[str, Any]
    priority: int
    max_retries: int
    retry_count: int
    attempt: int
    idempotency_key: str
    lease_expires_at: datetime


@dataclass(frozen=True, slots=True)
class LeaseOutcome:
    """How a worker says its leased execution ended: `error` None means success with
    `result_json`; a failure is retried (if retries are left) only when `retryable`."""

    step_id: str
    attempt: int
    result_json: str | None = None
    error: dict[str, str] | None = None
    retryable: bool = True


@dataclass(frozen=True, slots=True)
class ExpiredLease:
    """A leased step whose lease ended: back to pending, or failed as `lease_expired`."""

    step_id: str
    type: str
    status: str


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A remote worker as its last claim or lease extension left it."""

    worker_id: str
    types: list[str]
    in_flight: int
    last_seen_ts: datetime
