"""What each consumer needs from the store, as small Protocols.

The runtime and the API depend on these, not on the PostgreSQL `Store`: the unit tests' in-memory
store (tests/support/memory_store.py) keeps the same contract, checked by tests/contract. Every
method raises only `fleetq_server.errors` types; ARCHITECTURE.md gives the rules they keep."""

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from fleetq_server import errors
from fleetq_server.store.records import (
    ClaimedStep,
    ExpiredLease,
    HeartbeatOutcome,
    InsertOutcome,
    LeaderView,
    LeasedStep,
    LeaseExtension,
    LeaseOutcome,
    NewStep,
    PodRecord,
    QueueStats,
    RecoveryOutcome,
    RecoveryRecord,
    RecoveryRecordPosition,
    ScheduleRecord,
    ScheduleSpec,
    StepListFilter,
    StepListPosition,
    StepOutcome,
    StepRecord,
    ThroughputMinute,
    TypeLimit,
    TypeLimitRecord,
    WorkerRecord,
)
from fleetq_server.store.step_copy import StepCopyPort
from fleetq_server.store.step_outcomes import OutcomeClaimPort
from fleetq_server.store.vacuum import VacuumPort


class Subscription(Protocol):
    """A wake-up on submits (and on releases and requeues of any type)."""

    @property
    def connected(self) -> bool:
        """Whether wake-ups are being delivered now."""

    async def ensure(self) -> bool:
        """Connect if not connected; True when it (re)connected."""

    async def close(self) -> None:
        """Stop delivering wake-ups."""


class SubmitPort(StepCopyPort, Protocol):
    """Submits and reads of steps (the API)."""

    async def step_insert_many(
        self, steps: Sequence[NewStep], *, atomic: bool = False
    ) -> list[InsertOutcome | errors.ConflictError]:
        """Insert steps, de-duplicated on client keys (see `StepQueries`)."""

    async def step_get(self, step_id: str) -> StepRecord:
        """One step; NotFoundError when there is none."""


class ListPort(Protocol):
    """Step listings (the API)."""

    async def step_list_page(
        self, where: StepListFilter, after: StepListPosition | None, limit: int
    ) -> list[StepRecord]:
        """Up to `limit` steps matching `where`, newest first (created_ts, then step_id,
        descending), strictly after `after` in that order when it is given."""


class LifecyclePort(Protocol):
    """Cancels and retries asked for by clients (the API)."""

    async def step_cancel(self, step_id: str) -> str:
        """Cancel a pending step ("cancelled") or request the cancel of a claimed one
        ("claimed"); a cancelled step answers "cancelled" again. NotFoundError, or
        ConflictError for a completed or failed step."""

    async def step_retry(self, step_id: str) -> None:
        """A failed or cancelled step back to pending with a fresh retry budget;
        NotFoundError, or ConflictError for any other status."""


class CancelPort(Protocol):
    """The pod's: hear about, and poll for, cancels requested for the steps it runs."""

    async def step_cancels_requested(self, pod_id: str) -> list[str]:
        """Steps `pod_id` holds whose cancel was requested."""

    def step_cancel_subscription(self, on_cancel: Callable[[str], None]) -> Subscription:
        """Calls `on_cancel(step_id)` when any claimed step's cancel is requested."""


class ClaimPort(Protocol):
    """The claim loop's: take pending steps, best first."""

    async def step_claim_batch(
        self, pod_id: str, step_types: list[str], limit: int
    ) -> list[ClaimedStep]:
        """Claim up to `limit` steps of `step_types` in (priority desc, created, step id)
        order, each with its attempt bumped; nothing for a pod not registered up."""

    async def step_insert_claim(
        self, steps: Sequence[NewStep], pod_id: str, step_types: list[str], limit: int
    ) -> tuple[list[InsertOutcome | errors.ConflictError], list[ClaimedStep] | None, bool]:
        """Insert steps as `SubmitPort.step_insert_many` does (not atomic), claim what
        `step_claim_batch` would then, NOTIFY the steps left pending. Claimed None: failed
        after the insert committed. Last, whether nothing of `step_types` is left due."""

    async def step_next_due(self, step_types: list[str], since_s: float = 0.0) -> float | None:
        """Seconds until the first pending step of `step_types` not claimable `since_s` ago
        (as the caller's claim began) becomes so, negative if it has; None if none."""

    async def step_release_orphans(
        self, pod_id: str, running_step_ids: Collection[str]
    ) -> list[tuple[str, str]]:
        """Give back to pending, without spending a retry, the steps claimed by `pod_id`
        not in `running_step_ids` (claims whose answer was lost); returns (id, type) of each."""


class OutcomePort(Protocol):
    """The executor's: record how executions ended, fenced by their claim."""

    async def step_finish_many(self, outcomes: Sequence[StepOutcome]) -> list[str | None]:
        """Per outcome, the step's new status, or None when (step, pod, attempt) no longer
        holds the claim."""

    async def step_get(self, step_id: str) -> StepRecord:
        """One step (what a retried outcome write reads when its first answer was lost);
        NotFoundError when there is none."""


class WatchPort(Protocol):
    """The watch hub's: register watched steps, read them in batches, hear their changes."""

    async def step_watch_add(self, step_id: str, pod_id: str) -> None:
        """Record that `pod_id` has watchers of `step_id`, so its changes are notified."""

    async def step_watch_remove(self, step_ids: Sequence[str], pod_id: str) -> None:
        """Forget `pod_id`'s watches of `step_ids`."""

    async def step_get_many(self, step_ids: Sequence[str]) -> list[StepRecord]:
        """The steps of `step_ids` that exist, in any order."""

    def step_change_subscription(
        self, on_change: Callable[[list[str] | None], None]
    ) -> Subscription:
        """Calls `on_change(ids)` when watched steps change (None: any of them may have)."""


class PodPort(Protocol):
    """A pod's own lifecycle: registration, heartbeat, health, wake-ups, shutdown."""

    async def pod_register(
        self, pod_id: str, max_capacity: int, lease_s: float | None = None
    ) -> PodRecord:
        """Register the pod up, born now, live for `lease_s` unless it beats (None: judged
        by readers' thresholds, as rows of versions without leases)."""

    async def pod_heartbeat(
        self, pod_id: str, current_capacity: int, max_capacity: int, dead_threshold_s: float
    ) -> HeartbeatOutcome:
        """Beat, extending the pod's lease to `dead_threshold_s` (its own) from now;
        whether the pod is still up, and who leads."""

    async def pod_mark_down(self, pod_id: str) -> None:
        """Mark the pod down (clean shutdown)."""

    async def step_release(self, steps: list[ClaimedStep], pod_id: str) -> list[str]:
        """Give still-held claims back to pending without spending a retry."""

    async def ping(self) -> None:
        """Raise DatabaseUnavailableError unless the store answers."""

    def submit_subscription(
        self,
        step_types: Iterable[str],
        on_submit: Callable[[], None],
        on_counts: Callable[[Mapping[str, int] | None], None] | None = None,
    ) -> Subscription:
        """A wake-up for submits of `step_types`, not yet connected; `on_counts` hears
        every notification's new steps by type, whatever the types (None: any type)."""


class RecoveryPort(Protocol):
    """The leader's recovery: requeue or fail what dead pods held."""

    async def recovery_run(
        self,
        leader_pod_id: str,
        dead_threshold_s: float,
        *,
        dry_run: bool,
        trigger: str,
        min_gap_s: float = 0.0,
    ) -> tuple[RecoveryOutcome, bool]:
        """Run (or simulate) one cycle; (outcome, ran)."""

    async def pod_next_expiry(self, dead_threshold_s: float) -> float | None:
        """Seconds until the stalest up pod goes stale; None when none is up."""

    async def leader_get(self, dead_threshold_s: float) -> LeaderView:
        """The live pods, eldest (the leader) first."""


class RetentionPort(Protocol):
    """The leader's retention: bounded deletes of old rows; each returns how many went."""

    async def step_delete_finished_before(self, age_s: float, limit: int) -> int:
        """Completed or failed steps finished more than `age_s` ago."""

    async def recovery_record_delete_before(self, age_s: float, limit: int) -> int:
        """Recovery-cycle records finished more than `age_s` ago."""

    async def pod_delete_down_before(self, age_s: float, limit: int) -> int:
        """Pods marked down, last seen more than `age_s` ago."""

    async def worker_delete_unseen_before(self, age_s: float, limit: int) -> int:
        """Remote workers last seen more than `age_s` ago that hold no lease."""

    async def step_expire_pending(self, limit: int) -> int:
        """Fail up to `limit` pending steps past their pending expiry as `expired`."""


class StatsPort(Protocol):
    """Read-only views for the API and /metrics."""

    async def queue_stats(self, dead_threshold_s: float, top_types: int = 50) -> QueueStats:
        """Counts by status, priority and type (the `top_types` most numerous, the rest
        summed under pods.OTHER_TYPES), and the live pods."""

    async def type_limit_list(self) -> list[TypeLimitRecord]:
        """Every limit with its type's claimed steps now, by type."""

    async def leader_get(self, dead_threshold_s: float) -> LeaderView:
        """The live pods, eldest (the leader) first."""

    async def throughput_list(self, minutes: int) -> list[ThroughputMinute]:
        """Steps completed and failed in each of the last `minutes` minutes (at most 120),
        oldest first, the current minute last, zeros included."""

    async def recovery_record_list_page(
        self, after: RecoveryRecordPosition | None, limit: int
    ) -> list[RecoveryRecord]:
        """Up to `limit` recorded cycles, newest first (finished_ts, then cycle_id,
        descending), strictly after `after` in that order when it is given."""


class TracePort(Protocol):
    """What the executor reads when OpenTelemetry is on."""

    async def step_traceparent(self, step_id: str) -> str | None:
        """The W3C traceparent stored with the step at submit, if any."""


class ScheduleAdminPort(Protocol):
    """Schedules as the admin RPCs and the schedules file manage them (store/schedules.py)."""

    async def schedule_create(
        self, spec: ScheduleSpec, next_fire_ts: datetime | None, *, source: str = "api"
    ) -> ScheduleRecord:
        """Insert; ConflictError when the name is taken."""

    async def schedule_replace(
        self, spec: ScheduleSpec, next_fire_ts: datetime | None
    ) -> ScheduleRecord:
        """Overwrite spec and next tick, keeping history; NotFoundError when absent."""

    async def schedule_get(self, name: str) -> ScheduleRecord:
        """One schedule; NotFoundError when absent."""

    async def schedule_list(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""

    async def schedule_delete(self, name: str) -> None:
        """Delete; NotFoundError when absent."""

    async def schedule_reconcile(
        self, declared: Sequence[tuple[ScheduleSpec, datetime | None]]
    ) -> list[str]:
        """Make the file's schedules what is stored; the names of file schedules deleted."""


class ScheduleFirePort(Protocol):
    """The leader's schedule loop: find due schedules, fire ticks, move schedules on."""

    async def schedule_list_due(self, limit: int) -> tuple[datetime, list[ScheduleRecord]]:
        """The database's now and the unpaused schedules due by then, most overdue first."""

    async def schedule_next_due(self) -> float | None:
        """Seconds until the earliest unpaused schedule is due; None when none is."""

    async def schedule_advance(
        self,
        name: str,
        expected_next: datetime,
        next_fire_ts: datetime,
        fired: tuple[datetime, str] | None,
    ) -> bool:
        """Compare-and-set of the next tick (recording a fire); False when it lost."""

    async def step_insert_many(
        self, steps: Sequence[NewStep], *, atomic: bool = False
    ) -> list[InsertOutcome | errors.ConflictError]:
        """Insert steps, de-duplicated on client keys (see `StepQueries`)."""


class TypeLimitPort(Protocol):
    """Fleet-wide limits per step type, as the admin RPCs, the schedules file and the queue
    statistics see them (the claim enforces them: `ClaimPort`)."""

    async def type_limit_put(self, limit: TypeLimit, *, source: str = "api") -> TypeLimitRecord:
        """Set a type's limit; it with the type's claimed steps now."""

    async def type_limit_list(self) -> list[TypeLimitRecord]:
        """Every limit with its type's claimed steps now, by type."""

    async def type_limit_delete(self, step_type: str) -> None:
        """Lift a type's limit; NotFoundError when it has none."""

    async def type_limit_reconcile(self, declared: Sequence[TypeLimit]) -> list[str]:
        """Make the file's limits what is stored; the types whose file limits were lifted."""


class LeasePort(Protocol):
    """Leased claims for workers outside the pods (the worker RPCs)."""

    async def step_lease_claim(
        self, pod_id: str, worker_id: str, step_types: list[str], limit: int, lease_s: float
    ) -> list[LeasedStep]:
        """Lease up to `limit` steps of `step_types` to `worker_id` for `lease_s` seconds,
        in claim order, through the pod `pod_id` (nothing unless it is registered up)."""

    async def step_lease_finish_many(
        self, outcomes: Sequence[LeaseOutcome], backoffs: Sequence[float]
    ) -> list[str | errors.FleetQError]:
        """Per outcome, the step's new status, or the NotFoundError / StaleAttemptError
        saying why it changed nothing. A retried failure waits `backoffs[retry_count]`."""

    async def step_lease_extend(self, step_id: str, attempt: int, lease_s: float) -> LeaseExtension:
        """The lease's new end, `lease_s` from now, and whether a cancel was requested;
        NotFoundError / StaleAttemptError."""

    async def step_lease_release(
        self, held: Sequence[tuple[str, int]]
    ) -> list[str | errors.FleetQError]:
        """Give leased (step_id, attempt) back to pending without spending a retry; per
        pair, "pending" or the NotFoundError / StaleAttemptError saying why not."""

    async def step_next_due(self, step_types: list[str], since_s: float = 0.0) -> float | None:
        """As ClaimPort.step_next_due: when the next step of `step_types` is claimable."""

    async def worker_list(self, seen_within_s: float, limit: int) -> list[WorkerRecord]:
        """Workers seen lately or holding leases, most recently seen first."""


class LeaseExpiryPort(Protocol):
    """The leader's: retry or fail leased steps whose lease ended."""

    async def step_lease_expire(self, limit: int) -> list[ExpiredLease]:
        """Up to `limit` ended leases, earliest first, as `lease_expired`."""

    async def step_lease_next_expiry(self) -> float | None:
        """Seconds until the earliest lease ends; None when none is held."""


class StorePort(
    SubmitPort,
    ListPort,
    LifecyclePort,
    CancelPort,
    ClaimPort,
    OutcomePort,
    OutcomeClaimPort,
    TracePort,
    WatchPort,
    PodPort,
    RecoveryPort,
    RetentionPort,
    VacuumPort,
    StatsPort,
    ScheduleAdminPort,
    ScheduleFirePort,
    TypeLimitPort,
    LeasePort,
    LeaseExpiryPort,
    Protocol,
):
    """Everything a pod uses: what `Pod` is built on."""

    async def close(self) -> None:
        """Release the store's resources."""
