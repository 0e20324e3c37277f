"""Every Prometheus metric a pod exports, defined in one place (the default registry).

Step counters are per pod (sum them across the fleet); queue depth is the shared queue
as the database sees it, so every pod reports the same numbers. Names follow the
Prometheus conventions: `fleetq_` prefix, `_total` counters, base units (`_seconds`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from collections.abc import Callable

    from fleetq_server.runtime.state import PodState

# Request latencies: about a millisecond up to a slow database.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Step run time and queue wait: milliseconds for trivial steps up to an hour.
STEP_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip

_STEP_TYPE = ("step_type",)

STEPS_SUBMITTED = Counter(
    "fleetq_steps_submitted", "Steps accepted by this pod (not de-duplicated repeats)", _STEP_TYPE
)
STEPS_SCHEDULED = Counter(
    "fleetq_steps_scheduled",
    "Accepted steps submitted with run_at or delay_seconds (also counted as submitted)",
    _STEP_TYPE,
)
WATCHERS = Gauge("fleetq_watchers", "WatchStep streams open on this pod")
STEPS_CLAIMED = Counter("fleetq_steps_claimed", "Steps this pod claimed to run", _STEP_TYPE)
STEPS_COMPLETED = Counter("fleetq_steps_completed", "Steps this pod completed", _STEP_TYPE)
STEPS_RETRIED = Counter(
    "fleetq_steps_retried", "Failed executions put back to pending with a retry spent", _STEP_TYPE
)
STEPS_FAILED = Counter(
    "fleetq_steps_failed",
    "Steps failed terminally, by this pod's executor or its recovery cycles",
    _STEP_TYPE,
)
# No step-type label: expired steps are often of types no pod runs, which clients choose.
STEPS_EXPIRED = Counter(
    "fleetq_steps_expired",
    "Pending steps failed as expired by this pod (as leader), past their pending expiry",
)
STEPS_REQUEUED = Counter(
    "fleetq_steps_requeued", "Steps of lost pods requeued by this pod's recovery", _STEP_TYPE
)
STEPS_FENCED = Counter(
    "fleetq_steps_fenced",
    "Outcomes dropped because the claim had been taken away (the step was reassigned)",
    _STEP_TYPE,
)
STEPS_CANCELLED = Counter(
    "fleetq_steps_cancelled",
    "Running steps whose cancel was requested and that this pod ended as cancelled",
    _STEP_TYPE,
)
# No step-type label: a request names only a step id.
CANCEL_REQUESTS = Counter(
    "fleetq_cancel_requests",
    "CancelStep calls this pod served, by what they did: cancelled (a pending step) or "
    "requested (a claimed step, which its pod then stops)",
    ("result",),
)
RETRY_REQUESTS = Counter(
    "fleetq_retry_requests", "Failed or cancelled steps put back to pending by RetryStep here"
)
STEPS_RELEASED = Counter(
    "fleetq_steps_released",
    "Steps given back to pending without spending a retry: unfinished at shutdown, or"
    " claimed by a claim whose answer was lost",
    _STEP_TYPE,
)
REMOTE_CLAIMS = Counter(
    "fleetq_remote_steps_claimed", "Steps this pod leased to remote workers", _STEP_TYPE
)
REMOTE_OUTCOMES = Counter(
    "fleetq_remote_step_outcomes",
    "Remote workers' outcome writes through this pod, by what they did (completed, pending:"
    " retried, failed, released, or refused: conflict, not_found)",
    ["outcome"],
)
VACUUMS = Counter(
    "fleetq_vacuums", "VACUUMs of fleetq_steps this pod ran as leader (FLEETQ_VACUUM_THRESHOLD)"
)
VACUUM_SECONDS = Counter(
    "fleetq_vacuum_seconds", "Time this pod's VACUUMs of fleetq_steps took, in total"
)
LEASES_EXPIRED = Counter(
    "fleetq_leases_expired",
    "Leased steps whose lease ended, requeued or failed by this pod as leader",
    [*_STEP_TYPE, "outcome"],
)
STEP_RUN_SECONDS = Histogram(
    "fleetq_step_run_seconds",
    "Handler run time, from its start to its result or error",
    _STEP_TYPE,
    buckets=STEP_BUCKETS,
)
STEP_QUEUE_WAIT_SECONDS = Histogram(
    "fleetq_step_queue_wait_seconds",
    "From when a step became claimable (submitted, or its backoff ended) to its claim,"
    " by the database clock",
    _STEP_TYPE,
    buckets=STEP_BUCKETS,
)

POD_CURRENT_CAPACITY = Gauge("fleetq_pod_current_capacity", "Steps executing on this pod now")
POD_MAX_CAPACITY = Gauge("fleetq_pod_max_capacity", "Most steps this pod runs at once")
POD_IS_LEADER = Gauge("fleetq_pod_is_leader", "1 while this pod is the fleet's leader")
POD_HEALTHY = Gauge(
    "fleetq_pod_healthy", "1 while the database answers and the pod is not draining"
)
CLAIM_LONG_POLLS = Gauge(
    "fleetq_claim_long_polls", "ClaimSteps calls on this pod waiting for work now"
)
QUEUE_STEPS = Gauge(
    "fleetq_queue_steps", "Steps in the shared queue by status (refreshed on scrape)", ("status",)
)
TYPE_LIMIT_IN_FLIGHT = Gauge(
    "fleetq_type_limit_in_flight",
    "Claimed steps fleet-wide of each step type with a limit (refreshed on scrape)",
    _STEP_TYPE,
)
TYPE_LIMIT_MAX_CONCURRENCY = Gauge(
    "fleetq_type_limit_max_concurrency",
    "The fleet-wide max_concurrency of each limited step type (refreshed on scrape)",
    _STEP_TYPE,
)
TYPE_LIMIT_RATE = Gauge(
    "fleetq_type_limit_rate_per_second",
    "The fleet-wide claim rate of each rate-limited step type (refreshed on scrape)",
    _STEP_TYPE,
)

EVENT_LOOP_LAG_SECONDS = Histogram(
    "fleetq_event_loop_lag_seconds",
    "How late the pod's event loop ran a timer: time every request, heartbeat and loop"
    " waits for its turn",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0),
)

RECOVERY_CYCLES = Counter(
    "fleetq_recovery_cycles",
    "Recovery cycles this pod attempted, by trigger and outcome",
    ("trigger", "outcome"),
)
RECOVERY_CYCLE_SECONDS = Histogram(
    "fleetq_recovery_cycle_duration_seconds",
    "Duration of recovery cycles that ran (dry runs included)",
    ("trigger",),
    buckets=REQUEST_BUCKETS,
)

SCHEDULE_TICKS = Counter(
    "fleetq_schedule_ticks",
    "Schedule ticks the leader handled: fired, skipped_missed (downtime, catch_up skip) or"
    " skipped_overlap (previous run still pending or claimed)",
    ("outcome",),
)
GRPC_REQUESTS = Counter(
    "fleetq_grpc_server_requests",
    "Unary RPCs received over gRPC (REST calls are counted in fleetq_http_requests_total)",
    ("method", "code"),
)
GRPC_REQUEST_SECONDS = Histogram(
    "fleetq_grpc_server_request_duration_seconds",
    "Time to handle unary RPCs received over gRPC",
    ("method",),
    buckets=REQUEST_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "fleetq_http_requests",
    "HTTP requests by route template and status",
    ("method", "route", "status"),
)
HTTP_REQUEST_SECONDS = Histogram(
    "fleetq_http_request_duration_seconds",
    "Time to answer HTTP requests, by route template",
    ("method", "route"),
    buckets=REQUEST_BUCKETS,
)


Metric = TypeVar("Metric", Counter, Gauge, Histogram)


@functools.cache
def child(metric: Metric, *label_values: str) -> Any:
    """`metric.labels(*label_values)`, cached: `labels()` takes a lock and builds a key on
    every call (~3 us), and the hot paths call it several times per step or request.
    Label values on these paths are bounded (registered step types, known methods and
    route templates), so the cache is too."""
    return metric.labels(*label_values)


# Submitted step types are chosen by clients: past this many distinct ones, new types are
# counted as "other", so made-up types cannot grow the exposition without bound. (The
# other step counters only ever see types some pod has a handler for.)
MAX_SUBMITTED_TYPE_LABELS = 100
_submitted_types: set[str] = set()


def count_submitted(step_type: str, *, scheduled: bool = False, count: int = 1) -> None:
    """Count `count` newly accepted steps of a type (and as many scheduled ones, if they
    were scheduled). A batch counts once per type: a locked increment per step was a
    twentieth of a SubmitBatch's pod CPU."""
    if step_type not in _submitted_types and len(_submitted_types) < MAX_SUBMITTED_TYPE_LABELS:
        _submitted_types.add(step_type)
    label = step_type if step_type in _submitted_types else "other"
    child(STEPS_SUBMITTED, label).inc(count)
    if scheduled:
        child(STEPS_SCHEDULED, label).inc(count)


def track_pod_state(state: PodState) -> None:
    """Read the pod gauges from `state` at scrape time: always current, never updated by hand."""
    POD_CURRENT_CAPACITY.set_function(lambda: state.current_capacity)
    POD_MAX_CAPACITY.set_function(lambda: state.max_capacity)
    POD_IS_LEADER.set_function(lambda: float(state.is_leader))
    POD_HEALTHY.set_function(lambda: float(state.healthy))


def track_long_polls(waiting: Callable[[], int]) -> None:
    """Read the long-poll gauge from `waiting()` at scrape time."""
    CLAIM_LONG_POLLS.set_function(waiting)
