"""Plain records the store reads and writes; the store never sees protobuf or HTTP."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


# Not frozen, as InsertOutcome: a SubmitBatch makes a thousand of each, and a frozen
# dataclass's __init__ sets every field through object.__setattr__, which made these two
# about a tenth of a batch's pod CPU per step.
@dataclass(slots=True)
class NewStep:
    """A validated step about to be inserted."""

    step_id: str
    type: str
    # args and metadata as validation wrote them (submission.validate: canonical JSON
    # text), sent to PostgreSQL as they are rather than serialised again.
    args_json: bytes
    metadata_json: bytes
    priority: int
    max_retries: int
    idempotency_key: str
    client_key: str | None
    # The fingerprint a repeat of `client_key` must match; "" when there is no client key
    # (nothing can repeat the step, so nothing reads it).
    payload_hash: str
    # Seconds it may wait pending before it fails as `expired`; None: never.
    pending_expiry_s: float | None = None
    # Scheduled submits: not claimable before `run_at`, or `delay_s` seconds after the
    # insert (database clock); at most one of the two is set.
    run_at: datetime | None = None
    delay_s: float | None = None
    # The W3C traceparent of the submit's span (OpenTelemetry on), for its attempts' links.
    traceparent: str | None = None


@dataclass(slots=True)
class InsertOutcome:
    """The step a submit resolved to; `created` is False for a de-duplicated repeat."""

    step_id: str
    created: bool


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One execution of a step that has ended (the running one is the step row's own)."""

    attempt: int
    pod_id: str | None
    started_ts: datetime | None
    finished_ts: datetime
    # completed, failed, cancelled, pod_lost or released
    outcome: str
    error: dict[str, str] | None


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
    # When the current (or last) execution was claimed.
    claimed_ts: datetime | None = None
    # Whether CancelStep asked the step to stop.
    cancel_requested: bool = False
    # The executions that have ended, oldest first.
    attempts: tuple[AttemptRecord, ...] = ()


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
class RecoveryRecord:
    """The durable record of a recovery cycle that ran."""

    outcome: RecoveryOutcome
    leader_pod_id: str
    trigger: str
    started_ts: datetime
    finished_ts: datetime


@dataclass(frozen=True, slots=True)
class RecoveryRecordPosition:
    """Where a page of recovery records ended: its last, in (finished_ts, cycle_id)."""

    finished_ts: datetime
    cycle_id: str


@dataclass(frozen=True, slots=True)
class ThroughputMinute:
    """Steps that completed and failed in the minute starting at `minute_ts`."""

    minute_ts: datetime
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A periodic schedule as declared (API or schedules file), already validated: exactly
    one of `cron` and `interval_seconds`; the step template's fields as a submit's."""

    name: str
    step_type: str
    cron: str | None = None
    interval_seconds: int | None = None
    timezone: str = "UTC"
    args: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    max_retries: int = 3
    # "allow", or "skip" a tick while the previous run is still pending or claimed.
    overlap: str = "allow"
    # After downtime: "skip" the missed ticks, or run "once" for all of them.
    catch_up: str = "skip"
    paused: bool = False


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """A stored schedule: its spec, where it came from ("api" or "file"), the next tick
    to fire (None while paused), and its latest fire with that step's current status."""

    spec: ScheduleSpec
    source: str
    next_fire_ts: datetime | None
    last_fire_ts: datetime | None
    last_step_id: str | None
    last_step_status: str | None
    created_ts: datetime
    updated_ts: datetime


@dataclass(frozen=True, slots=True)
class TypeLimit:
    """A fleet-wide limit on one step type: claimed steps at once (`max_concurrency`), and
    claims per second as a token bucket of `burst` tokens. None: that part is unlimited;
    `burst` is set exactly when `rate_per_second` is."""

    step_type: str
    max_concurrency: int | None = None
    rate_per_second: float | None = None
    burst: int | None = None


@dataclass(frozen=True, slots=True)
class TypeLimitRecord:
    """A stored limit, where it came from ("api" or "file"), and its type's claimed steps."""

    limit: TypeLimit
    source: str
    in_flight: int
    updated_ts: datetime


@dataclass(frozen=True, slots=True)
class StepListFilter:
    """What a step listing keeps: every set field must match (empty or None: any)."""

    statuses: tuple[str, ...] = ()
    type: str | None = None
    created_after: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive
    # A client-supplied idempotency key.
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class StepListPosition:
    """Where a listing page ended: the last step it returned, in (created_ts, step_id)."""

    created_ts: datetime
    step_id: str


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
class LeaseExtension:
    """A lease after ExtendLease: its new end, and whether CancelStep asked the step to
    stop (the worker should give up its execution)."""

    lease_expires_at: datetime
    cancel_requested: bool


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
