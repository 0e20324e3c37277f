"""Store records -> protobuf responses. Pure functions, no I/O."""

from datetime import datetime

from fleetq.v1 import fleetq_pb2 as pb
from google.protobuf import timestamp_pb2

from fleetq_common.json_values import dict_to_struct, holds_more_values, python_to_value
from fleetq_common.presence import present
from fleetq_server.store.records import (
    LeaderView,
    PodRecord,
    QueueStats,
    RecoveryOutcome,
    StepRecord,
)


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp for an aware datetime."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


# Steps whose JSON holds more values than this are converted off the event loop: building
# a Struct costs a few microseconds per value.
LARGE_STEP_VALUES = 256


def is_large(step: StepRecord) -> bool:
    """Whether building the step's status message is worth moving off the event loop."""
    return holds_more_values((step.args, step.metadata, step.result), LARGE_STEP_VALUES)


def step_status(step: StepRecord) -> pb.GetStepStatusResponse:
    """The status RPC's view of a step."""
    response = pb.GetStepStatusResponse(
        step_id=step.step_id,
        status=step.status,
        last_update_ts=timestamp(step.last_update_ts),
        retry_count=step.retry_count,
        priority=step.priority,
        created_ts=timestamp(step.created_ts),
        max_retries=step.max_retries,
        payload=pb.StepPayload(
            type=step.type,
            args=dict_to_struct(step.args),
            metadata=dict_to_struct(step.metadata),
        ),
    )
    if step.claimed_by is not None:
        response.claimed_by = step.claimed_by
    if step.run_at is not None:
        response.run_at.CopyFrom(timestamp(step.run_at))
    if step.result is not None:
        response.result.CopyFrom(python_to_value(step.result))
    if step.error is not None:
        response.error.CopyFrom(_error(step.error))
    response.attempts.extend(_attempts(step))
    response.cancel_requested = step.cancel_requested
    return response


def _error(error: dict[str, str]) -> pb.StepError:
    return pb.StepError(type=error.get("type", ""), message=error.get("message", ""))


def _attempts(step: StepRecord) -> list[pb.StepAttempt]:
    """The ended attempts, then the running one (the step row's own claim) if any."""
    attempts = [
        _attempt(a.attempt, a.pod_id, a.started_ts, a.finished_ts, a.outcome, a.error)
        for a in step.attempts
    ]
    if step.status == "claimed" and step.claimed_by is not None:
        attempts.append(
            _attempt(step.attempt, step.claimed_by, step.claimed_ts, None, "running", None)
        )
    return attempts


def _attempt(
    number: int,
    pod_id: str | None,
    started: datetime | None,
    finished: datetime | None,
    outcome: str,
    error: dict[str, str] | None,
) -> pb.StepAttempt:
    """One attempt; unset (None) fields stay null."""
    return pb.StepAttempt(
        number=number,
        **present(pod_id=pod_id),
        started_ts=None if started is None else timestamp(started),
        finished_ts=None if finished is None else timestamp(finished),
        outcome=outcome,
        error=None if error is None else _error(error),
    )


def _eligible_pod(pod: PodRecord, leader_id: str | None) -> pb.EligiblePod:
    return pb.EligiblePod(
        pod_id=pod.pod_id,
        birth_ts=timestamp(pod.birth_ts),
        last_heartbeat_ts=timestamp(pod.last_heartbeat_ts),
        is_leader=pod.pod_id == leader_id,
    )


def leader(view: LeaderView) -> pb.GetLeaderResponse:
    """The leader RPC's view of the election."""
    current = view.leader
    response = pb.GetLeaderResponse(
        active_pods=len(view.live_pods),
        last_election_check=timestamp(view.checked_ts),
        election_details=pb.ElectionDetails(
            eligible_pods=[
                _eligible_pod(pod, current.pod_id if current else None) for pod in view.live_pods
            ]
        ),
    )
    if current is not None:
        response.current_leader = current.pod_id
        response.leader_birth_ts.CopyFrom(timestamp(current.birth_ts))
    return response


def queue_stats(stats: QueueStats) -> pb.GetQueueStatsResponse:
    """The queue statistics RPC's view."""
    counts = stats.counts_by_status
    response = pb.GetQueueStatsResponse(
        pending_steps=counts.get("pending", 0),
        claimed_steps=counts.get("claimed", 0),
        completed_steps=counts.get("completed", 0),
        failed_steps=counts.get("failed", 0),
        cancelled_steps=counts.get("cancelled", 0),
        active_pods=len(stats.live_pods),
        queue_depth_by_priority=stats.pending_by_priority,
        steps_by_type=stats.steps_by_type,
    )
    for pod in stats.live_pods:
        response.pod_capacity[pod.pod_id].CopyFrom(
            pb.PodCapacity(current=pod.current_capacity, max=pod.max_capacity)
        )
    if stats.live_pods:
        response.current_leader = stats.live_pods[0].pod_id
    return response


def recovery_summary(outcome: RecoveryOutcome) -> pb.RecoverySummary:
    """The recovery RPC's summary of a cycle."""
    return pb.RecoverySummary(
        cycle_id=outcome.cycle_id,
        dead_pods_found=len(outcome.dead_pods),
        orphaned_steps_found=outcome.orphaned_steps_found,
        steps_requeued=len(outcome.requeued_steps),
        steps_marked_terminal=len(outcome.terminal_steps),
        duration_ms=outcome.duration_ms,
        dead_pods=outcome.dead_pods,
        requeued_steps=outcome.requeued_steps,
        terminal_steps=outcome.terminal_steps,
    )
