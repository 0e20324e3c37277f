"""What the client returns: plain, immutable values with no protobuf in sight."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """An accepted submit; a repeat with the same idempotency key names the original step."""

    step_id: str
    status: str
    message: str


@dataclass(frozen=True, slots=True)
class SubmitBatchResult:
    """An accepted SubmitBatch: each step's result in the order given, and how many of
    them are new (the rest repeat an idempotency key already used)."""

    steps: tuple[SubmitResult, ...]
    created_count: int


@dataclass(frozen=True, slots=True)
class StepError:
    """Why a step's last execution failed."""

    type: str
    message: str


@dataclass(frozen=True, slots=True)
class StepAttempt:
    """One execution of a step: `outcome` is "running" while it runs, then "completed",
    "failed", "cancelled", "pod_lost" or "released"."""

    number: int
    pod_id: str | None
    started_ts: datetime | None
    finished_ts: datetime | None
    outcome: str
    error: StepError | None


@dataclass(frozen=True, slots=True)
class StepStatus:
    """A step's current state, its payload, and its result or last error."""

    step_id: str
    status: str
    type: str
    args: dict[str, Any]
    metadata: dict[str, Any]
    priority: int
    max_retries: int
    retry_count: int
    claimed_by: str | None
    created_ts: datetime
    last_update_ts: datetime
    result: Any
    error: StepError | None
    # When the submit scheduled it to run (run_at or delay_seconds); None: at once.
    run_at: datetime | None = None
    # Every execution, oldest first.
    attempts: tuple[StepAttempt, ...] = ()
    # Whether a cancel was requested (a claimed step then ends "cancelled").
    cancel_requested: bool = False

    @property
    def finished(self) -> bool:
        """Whether the step is completed, failed or cancelled for good."""
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class PodCapacity:
    """A pod's load as of its last heartbeat."""

    current: int
    max: int


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A remote worker as its last claim or lease extension left it."""

    worker_id: str
    types: tuple[str, ...]
    in_flight: int
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Step counts by status, pending depth by priority, steps by type, and pod capacity."""

    pending_steps: int
    claimed_steps: int
    completed_steps: int
    failed_steps: int
    active_pods: int
    current_leader: str | None
    queue_depth_by_priority: dict[int, int]
    steps_by_type: dict[str, int]
    pod_capacity: dict[str, PodCapacity]
    cancelled_steps: int = 0
    # Remote workers seen in the last hour or holding leases, most recently seen first.
    workers: tuple[WorkerInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class EligiblePod:
    """A live pod in the leader election."""

    pod_id: str
    birth_ts: datetime
    last_heartbeat_ts: datetime
    is_leader: bool


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    """The election: the leader (None when no pod is live) and every live pod, eldest first."""

    current_leader: str | None
    leader_birth_ts: datetime | None
    active_pods: int
    last_election_check: datetime
    eligible_pods: tuple[EligiblePod, ...]


@dataclass(frozen=True, slots=True)
class RecoverySummary:
    """A recovery cycle: `status` is "completed", "dry_run" or "skipped"."""

    status: str
    message: str
    cycle_id: str
    dead_pods: tuple[str, ...]
    orphaned_steps_found: int
    requeued_steps: tuple[str, ...]
    terminal_steps: tuple[str, ...]
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Health:
    """One pod's health."""

    pod_id: str
    status: str
    uptime_seconds: float
    current_capacity: int
    max_capacity: int
    is_leader: bool
    version: str

    @property
    def healthy(self) -> bool:
        """Whether the pod serves: its database answers and it is not draining."""
        return self.status == "healthy"


@dataclass(frozen=True, slots=True)
class StepPage:
    """One page of a step listing, newest first; `next_page_token` is "" after the last."""

    steps: tuple[StepStatus, ...]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class LeasedStep:
    """A step leased to this worker: finish it (complete, fail, release) or extend its
    lease, with its `attempt`, before `lease_expires_at`."""

    step_id: str
    attempt: int
    type: str
    args: dict[str, Any]
    metadata: dict[str, Any]
    idempotency_key: str
    retry_count: int
    max_retries: int
    lease_expires_at: datetime


@dataclass(frozen=True, slots=True)
class LeaseExtension:
    """A lease after `extend_lease`: its new end, and whether the step's cancel was
    requested (CancelStep): the worker should stop; whatever it writes next ends the step
    cancelled."""

    lease_expires_at: datetime
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class CompletionOutcome:
    """What became of one result of `complete_steps`: "completed", "conflict" (a stale or
    expired attempt) or "not_found", with why when not completed."""

    step_id: str
    status: str
    detail: str
