"""Each client operation written once, free of I/O: the RPC to call, its request, and how to
read its response. The sync and asyncio clients only differ in how they send a `Call`."""

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Required, TypedDict, TypeVar, Unpack

import grpc
from fleetq.v1 import fleetq_pb2 as pb
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from fleetq_client.errors import FleetQClientError, Timeout, error_from_code
from fleetq_client.json_text import as_text
from fleetq_client.results import (
    CompletionOutcome,
    EligiblePod,
    Health,
    LeaderInfo,
    LeasedStep,
    LeaseExtension,
    PodCapacity,
    QueueStats,
    RecoverySummary,
    StepAttempt,
    StepError,
    StepPage,
    StepStatus,
    SubmitBatchResult,
    SubmitResult,
    WorkerInfo,
)
from fleetq_common.json_values import (
    fill_struct,
    python_to_value,
    struct_to_dict,
    value_to_python,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One RPC: the stub method's name, its request, and the response reader (for a
    server-streaming RPC, the reader of each message)."""

    method: str
    request: Message
    read: Callable[[Any], T]
    # Seconds the server may take by design (a long poll's wait): added to the deadline.
    wait: float = 0.0


def _time(stamp: timestamp_pb2.Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


class SubmitOptions(TypedDict, total=False):
    """A submit's optional fields: `max_retries` left out takes the server's default (3).
    `run_at` (an aware datetime) or `delay_seconds` schedules the step for later."""

    metadata: Mapping[str, Any]
    priority: int
    max_retries: int
    idempotency_key: str
    # Seconds the step may wait pending before it fails as "expired"; 0: never.
    pending_expiry_seconds: float
    run_at: datetime
    delay_seconds: float


class StepSpec(SubmitOptions, total=False):
    """One step of a batch: its `type` and `args`, and any submit option."""

    type: Required[str]
    args: Required[Mapping[str, Any]]


# A submit's outcome when submits share a call: its result, or the error it alone met.
SubmitOutcome = SubmitResult | FleetQClientError
# The most steps one SubmitBatch takes (the server's limit, `SubmitBatchRequest.steps`).
# Both limits are the pod's, stated again: tests/unit/test_client_limits.py ties them.
MAX_BATCH_STEPS = 1000
# The largest request a pod reads (its grpc.max_receive_message_length): a SubmitBatch of
# coalesced submits stays within it, less the bytes of its `independent` flag.
MAX_REQUEST_BYTES = 1 << 20
MAX_COALESCED_BYTES = MAX_REQUEST_BYTES - 2
_SCALAR_OPTIONS = ("max_retries", "idempotency_key", "pending_expiry_seconds", "delay_seconds")


def _fill_submit(
    request: pb.SubmitStepRequest, step_type: str, args: Mapping[str, Any], options: Any
) -> None:
    """Set a submit's fields in place: args and metadata as JSON text where it says what a
    Struct would (json_text.as_text), else as Structs, written straight into the message."""
    request.type = step_type
    _set_object(request, "args", args)  # present even when empty: the server requires args
    if not options:  # a plain submit(type, args): nothing more to look up
        return
    request.priority = options.get("priority", 0)
    for name in _SCALAR_OPTIONS:
        if (value := options.get(name)) is not None:
            setattr(request, name, value)
    if "metadata" in options:
        _set_object(request, "metadata", options["metadata"])
    if "run_at" in options:
        request.run_at.FromDatetime(options["run_at"])


# The calls whose requests carry submits' JSON text (json_text.PodReadsJsonText).
SUBMIT_METHODS = frozenset({"SubmitStep", "SubmitBatch"})


def _set_object(request: pb.SubmitStepRequest, field: str, value: Mapping[str, Any]) -> None:
    """Set `field` as JSON text (`<field>_json`), or as a Struct where text would not say
    the same (json_text.as_text)."""
    text = as_text(value)
    if text is None:
        fill_struct(getattr(request, field), value)
    else:
        setattr(request, f"{field}_json", text)


def submit(
    step_type: str, args: Mapping[str, Any], **options: Unpack[SubmitOptions]
) -> Call[SubmitResult]:
    """Submit a step; a repeat with the same idempotency key returns the original."""
    return Call("SubmitStep", submit_request(step_type, args, **options), submit_result)


def submit_request(
    step_type: str, args: Mapping[str, Any], **options: Unpack[SubmitOptions]
) -> pb.SubmitStepRequest:
    """The request of a submit (alone, or one of several sent together)."""
    request = pb.SubmitStepRequest()
    _fill_submit(request, step_type, args, options)
    return request


def submit_batch(steps: Iterable[StepSpec]) -> Call[SubmitBatchResult]:
    """Submit up to MAX_BATCH_STEPS steps at once, all or nothing (one transaction)."""
    request = pb.SubmitBatchRequest()
    add = request.steps.add
    for spec in steps:
        # A spec of type and args alone has no option to look up (a fifth of a plain
        # step's building).
        options = spec if len(spec) > 2 else None
        _fill_submit(add(), spec["type"], spec["args"], options)
    return Call("SubmitBatch", request, _batch_result)


def submit_each(requests: Sequence[pb.SubmitStepRequest]) -> Call[list[SubmitOutcome]]:
    """Submits made one by one, sent as one independent SubmitBatch: each gets its own
    result or error. (A pod that predates `independent` stores the batch all or nothing,
    so one invalid step then fails them all.)"""
    request = pb.SubmitBatchRequest(independent=True)
    request.steps.extend(requests)
    return Call("SubmitBatch", request, _each_outcome)


def batched_size(request: pb.SubmitStepRequest) -> int:
    """The bytes a submit takes in a SubmitBatch: itself, its field tag and its length
    prefix (at most 5 bytes of varint)."""
    return request.ByteSize() + 6


def _each_outcome(response: pb.SubmitBatchResponse) -> list[SubmitOutcome]:
    steps = response.steps
    # Every step accepted (`steps` then holds them all, in order), or a pod that predates
    # independent batches (no `items`): no outcome to look into one by one.
    if len(steps) == len(response.items) or not response.items:
        return [SubmitResult(step.step_id, step.status, step.message) for step in steps]
    return [
        submit_result(item.accepted)
        if item.HasField("accepted")
        else error_from_code(_status_code(item.refused.code), item.refused.message)
        for item in response.items
    ]


def _status_code(name: str) -> grpc.StatusCode:
    return grpc.StatusCode.__members__.get(name, grpc.StatusCode.UNKNOWN)


def batches(steps: Iterable[StepSpec], size: int) -> Iterator[Call[SubmitBatchResult]]:
    """`steps` as SubmitBatch calls of at most `size` steps (1 to MAX_BATCH_STEPS), each
    within the bytes a pod reads (a step that alone exceeds them is sent alone, and
    refused); lazily: a generator of steps is never held in memory whole."""
    if not 1 <= size <= MAX_BATCH_STEPS:
        raise ValueError(f"chunk_size must be 1 to {MAX_BATCH_STEPS}")
    iterator = iter(steps)
    while chunk := list(itertools.islice(iterator, size)):
        yield from _within_bytes(chunk)


def _within_bytes(chunk: list[StepSpec]) -> Iterator[Call[SubmitBatchResult]]:
    """`chunk` as one call, or halved until each call fits MAX_REQUEST_BYTES. One size of
    the whole request: a size per step cost the client a third more per step."""
    call = submit_batch(chunk)
    if len(chunk) == 1 or call.request.ByteSize() <= MAX_REQUEST_BYTES:
        yield call
        return
    half = len(chunk) // 2
    yield from _within_bytes(chunk[:half])
    yield from _within_bytes(chunk[half:])


def _batch_result(response: pb.SubmitBatchResponse) -> SubmitBatchResult:
    # A list made inline, not a generator calling submit_result: a fifth less per step.
    steps = [SubmitResult(step.step_id, step.status, step.message) for step in response.steps]
    return SubmitBatchResult(
        steps=tuple(steps),
        created_count=response.created_count,
    )


def submit_result(response: pb.SubmitStepResponse) -> SubmitResult:
    return SubmitResult(step_id=response.step_id, status=response.status, message=response.message)


def status(step_id: str) -> Call[StepStatus]:
    """A step's current state."""
    return Call("GetStepStatus", pb.GetStepStatusRequest(step_id=step_id), _step_status)


def watch(step_id: str) -> Call[StepStatus]:
    """A step's state now, then each change (a server-streaming call)."""
    return Call("WatchStep", pb.WatchStepRequest(step_id=step_id), _step_status)


class ListFilters(TypedDict, total=False):
    """A listing's filters (all must match) and its page."""

    status: Sequence[str]
    type: str
    created_after: datetime
    created_before: datetime
    idempotency_key: str
    page_size: int
    page_token: str


def list_steps(**filters: Unpack[ListFilters]) -> Call[StepPage]:
    """One page of steps, newest first."""
    request = pb.ListStepsRequest(
        status=list(filters.get("status", ())),
        type=filters.get("type", ""),
        idempotency_key=filters.get("idempotency_key", ""),
        page_size=filters.get("page_size", 0),
        page_token=filters.get("page_token", ""),
    )
    if "created_after" in filters:
        request.created_after.FromDatetime(filters["created_after"])
    if "created_before" in filters:
        request.created_before.FromDatetime(filters["created_before"])
    return Call("ListSteps", request, _step_page)


def _step_page(response: pb.ListStepsResponse) -> StepPage:
    return StepPage(
        steps=tuple(_step_status(step) for step in response.steps),
        next_page_token=response.next_page_token,
    )


def cancel(step_id: str) -> Call[StepStatus]:
    """Cancel a pending step, or ask a claimed one to stop; the step as it now stands."""
    return Call("CancelStep", pb.CancelStepRequest(step_id=step_id), _changed_step)


def retry(step_id: str) -> Call[StepStatus]:
    """Put a failed or cancelled step back in the queue with a fresh retry budget."""
    return Call("RetryStep", pb.RetryStepRequest(step_id=step_id), _changed_step)


def _changed_step(response: pb.CancelStepResponse | pb.RetryStepResponse) -> StepStatus:
    return _step_status(response.step)


def _error(response: Any) -> StepError | None:
    """A StepError message as a value; None when unset."""
    if not response.HasField("error"):
        return None
    return StepError(type=response.error.type, message=response.error.message)


def _attempt(attempt: pb.StepAttempt) -> StepAttempt:
    return StepAttempt(
        number=attempt.number,
        pod_id=attempt.pod_id if attempt.HasField("pod_id") else None,
        started_ts=_time(attempt.started_ts) if attempt.HasField("started_ts") else None,
        finished_ts=_time(attempt.finished_ts) if attempt.HasField("finished_ts") else None,
        outcome=attempt.outcome,
        error=_error(attempt),
    )


def _step_status(response: pb.GetStepStatusResponse) -> StepStatus:
    return StepStatus(
        step_id=response.step_id,
        status=response.status,
        type=response.payload.type,
        args=struct_to_dict(response.payload.args),
        metadata=struct_to_dict(response.payload.metadata),
        priority=response.priority,
        max_retries=response.max_retries,
        retry_count=response.retry_count,
        claimed_by=response.claimed_by if response.HasField("claimed_by") else None,
        created_ts=_time(response.created_ts),
        last_update_ts=_time(response.last_update_ts),
        result=value_to_python(response.result) if response.HasField("result") else None,
        error=_error(response),
        run_at=_time(response.run_at) if response.HasField("run_at") else None,
        attempts=tuple(_attempt(attempt) for attempt in response.attempts),
        cancel_requested=response.cancel_requested,
    )


def queue_stats() -> Call[QueueStats]:
    """Queue statistics (an admin call)."""
    return Call("GetQueueStats", pb.GetQueueStatsRequest(), _queue_stats)


def _queue_stats(response: pb.GetQueueStatsResponse) -> QueueStats:
    return QueueStats(
        pending_steps=response.pending_steps,
        claimed_steps=response.claimed_steps,
        completed_steps=response.completed_steps,
        failed_steps=response.failed_steps,
        cancelled_steps=response.cancelled_steps,
        active_pods=response.active_pods,
        current_leader=(response.current_leader if response.HasField("current_leader") else None),
        queue_depth_by_priority=dict(response.queue_depth_by_priority),
        steps_by_type=dict(response.steps_by_type),
        pod_capacity={
            pod_id: PodCapacity(current=capacity.current, max=capacity.max)
            for pod_id, capacity in response.pod_capacity.items()
        },
        workers=tuple(
            WorkerInfo(
                worker_id=worker.worker_id,
                types=tuple(worker.types),
                in_flight=worker.in_flight,
                last_seen=_time(worker.last_seen),
            )
            for worker in response.workers
        ),
    )


def leader() -> Call[LeaderInfo]:
    """The leader election (an admin call)."""
    return Call("GetLeader", pb.GetLeaderRequest(), _leader_info)


def _leader_info(response: pb.GetLeaderResponse) -> LeaderInfo:
    has_leader = response.HasField("current_leader")
    return LeaderInfo(
        current_leader=response.current_leader if has_leader else None,
        leader_birth_ts=_time(response.leader_birth_ts) if has_leader else None,
        active_pods=response.active_pods,
        last_election_check=_time(response.last_election_check),
        eligible_pods=tuple(
            EligiblePod(
                pod_id=pod.pod_id,
                birth_ts=_time(pod.birth_ts),
                last_heartbeat_ts=_time(pod.last_heartbeat_ts),
                is_leader=pod.is_leader,
            )
            for pod in response.election_details.eligible_pods
        ),
    )


def recover(*, dry_run: bool = False, force: bool = False) -> Call[RecoverySummary]:
    """Run a recovery cycle on the leader (an admin call)."""
    return Call("RunRecovery", pb.RunRecoveryRequest(dry_run=dry_run, force=force), _recovery)


def _recovery(response: pb.RunRecoveryResponse) -> RecoverySummary:
    summary = response.recovery_summary
    return RecoverySummary(
        status=response.status,
        message=response.message,
        cycle_id=summary.cycle_id,
        dead_pods=tuple(summary.dead_pods),
        orphaned_steps_found=summary.orphaned_steps_found,
        requeued_steps=tuple(summary.requeued_steps),
        terminal_steps=tuple(summary.terminal_steps),
        duration_ms=summary.duration_ms,
    )


def health() -> Call[Health]:
    """The pod's health (answers even when the pod is unhealthy)."""
    return Call("GetHealth", pb.GetHealthRequest(), _health)


def _health(response: pb.GetHealthResponse) -> Health:
    return Health(
        pod_id=response.pod_id,
        status=response.status,
        uptime_seconds=response.uptime_seconds,
        current_capacity=response.current_capacity,
        max_capacity=response.max_capacity,
        is_leader=response.is_leader,
        version=response.version,
    )


def claim(
    worker_id: str,
    step_types: Sequence[str],
    *,
    max_steps: int = 1,
    wait_seconds: float = 0.0,
    lease_seconds: float = 30.0,
) -> Call[list[LeasedStep]]:
    """Lease up to `max_steps` steps of `step_types`, waiting up to `wait_seconds` for
    some when there are none (a long poll)."""
    request = pb.ClaimStepsRequest(
        worker_id=worker_id,
        types=list(step_types),
        max_steps=max_steps,
        wait_seconds=wait_seconds,
        lease_seconds=lease_seconds,
    )
    return Call("ClaimSteps", request, _leased_steps, wait=wait_seconds)


def _leased_steps(response: pb.ClaimStepsResponse) -> list[LeasedStep]:
    return [
        LeasedStep(
            step_id=step.step_id,
            attempt=step.attempt,
            type=step.type,
            args=struct_to_dict(step.args),
            metadata=struct_to_dict(step.metadata),
            idempotency_key=step.idempotency_key,
            retry_count=step.retry_count,
            max_retries=step.max_retries,
            lease_expires_at=_time(step.lease_expires_at),
        )
        for step in response.steps
    ]


def complete(step_id: str, attempt: int, result: Any = None) -> Call[str]:
    """Record a leased step's result (any JSON value); Conflict when the attempt no longer
    holds the step (stale, or its lease expired)."""
    request = pb.CompleteStepRequest(
        step_id=step_id, attempt=attempt, result=python_to_value(result)
    )
    return Call("CompleteStep", request, _status_word)


def fail(
    step_id: str, attempt: int, error_type: str, message: str, *, retryable: bool = True
) -> Call[str]:
    """Record a leased step's failure: "pending" when it will be retried, else "failed"."""
    request = pb.FailStepRequest(
        step_id=step_id,
        attempt=attempt,
        error=pb.StepError(type=error_type, message=message),
        retryable=retryable,
    )
    return Call("FailStep", request, _status_word)


def release(step_id: str, attempt: int) -> Call[str]:
    """Give a leased step back to pending without spending a retry."""
    request = pb.ReleaseStepRequest(step_id=step_id, attempt=attempt)
    return Call("ReleaseStep", request, _status_word)


def _status_word(response: pb.CompleteStepResponse) -> str:
    return response.status


def extend_lease(step_id: str, attempt: int, lease_seconds: float = 30.0) -> Call[LeaseExtension]:
    """Move a lease's end to `lease_seconds` from now; returns the new end and whether the
    step's cancel was requested."""
    request = pb.ExtendLeaseRequest(step_id=step_id, attempt=attempt, lease_seconds=lease_seconds)
    return Call(
        "ExtendLease",
        request,
        lambda response: LeaseExtension(
            _time(response.lease_expires_at), response.cancel_requested
        ),
    )


def complete_many(results: Sequence[tuple[str, int, Any]]) -> Call[list[CompletionOutcome]]:
    """Record many leased steps' results, (step_id, attempt, result) each, in one write;
    each is answered on its own."""
    request = pb.CompleteStepsRequest(
        completions=[
            pb.StepCompletion(step_id=step_id, attempt=attempt, result=python_to_value(result))
            for step_id, attempt, result in results
        ]
    )
    return Call("CompleteSteps", request, _completion_outcomes)


def _completion_outcomes(response: pb.CompleteStepsResponse) -> list[CompletionOutcome]:
    return [
        CompletionOutcome(step_id=o.step_id, status=o.status, detail=o.detail)
        for o in response.outcomes
    ]


class StepWatch:
    """The clock and bookkeeping of `wait()`: reports each change of a step's state to
    `on_change`, and says how long to pause before the next poll (when the pod cannot
    stream the changes: one that predates WatchStep)."""

    def __init__(
        self,
        step_id: str,
        timeout: float,
        poll_interval: float,
        on_change: Callable[[StepStatus], None] | None,
    ) -> None:
        self._step_id = step_id
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        self._poll_interval = poll_interval
        self._on_change = on_change
        self._last_seen: tuple[str, int] | None = None

    def finished(self, step: StepStatus) -> bool:
        """Record a state seen; True once the step is completed, failed or cancelled."""
        seen = (step.status, step.retry_count)
        if seen != self._last_seen and self._on_change is not None:
            self._on_change(step)
        self._last_seen = seen
        return step.finished

    def timed_out(self) -> Timeout:
        """The error of a wait that ran out of time."""
        state = self._last_seen[0] if self._last_seen else "unknown"
        return Timeout(f"step {self._step_id} still {state} after {self._timeout:g}s")

    def remaining(self) -> float:
        """Seconds left of the wait; Timeout once the deadline has passed."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise self.timed_out()
        return remaining

    def pause(self) -> float:
        """Seconds to wait before polling again; Timeout once the deadline has passed."""
        return min(self._poll_interval, self.remaining())
