"""What the fleet did lately, written once like calls.py: steps finished per minute and the
recorded recovery cycles (admin calls)."""

from dataclasses import dataclass
from datetime import UTC, datetime

from fleetq.v1 import fleetq_pb2 as pb

from fleetq_client.calls import Call


@dataclass(frozen=True, slots=True)
class ThroughputMinute:
    """Steps that completed and failed in the minute starting at `minute_ts` (UTC)."""

    minute_ts: datetime
    completed_steps: int
    failed_steps: int


@dataclass(frozen=True, slots=True)
class RecoveryCycle:
    """The record of one recovery cycle that ran; `trigger` is "automatic" or "manual"."""

    cycle_id: str
    leader_pod_id: str
    trigger: str
    started_ts: datetime
    finished_ts: datetime
    dead_pods: tuple[str, ...]
    orphaned_steps_found: int
    requeued_steps: tuple[str, ...]
    terminal_steps: tuple[str, ...]
    duration_ms: int


@dataclass(frozen=True, slots=True)
class RecoveryCyclePage:
    """One page of recovery cycles, newest first; `next_page_token` is "" after the last."""

    cycles: tuple[RecoveryCycle, ...]
    next_page_token: str


def throughput(minutes: int | None = None) -> Call[list[ThroughputMinute]]:
    """The last `minutes` minutes (1 to 120; the server's default, 60, when None), oldest
    first, minutes without finished steps included."""
    request = (
        pb.GetThroughputRequest() if minutes is None else pb.GetThroughputRequest(minutes=minutes)
    )
    return Call(
        "GetThroughput",
        request,
        lambda response: [
            ThroughputMinute(
                minute_ts=m.minute_ts.ToDatetime(tzinfo=UTC),
                completed_steps=m.completed_steps,
                failed_steps=m.failed_steps,
            )
            for m in response.minutes
        ],
    )


def _cycle(message: pb.RecoveryCycle) -> RecoveryCycle:
    summary = message.recovery_summary
    return RecoveryCycle(
        cycle_id=summary.cycle_id,
        leader_pod_id=message.leader_pod_id,
        trigger=message.trigger,
        started_ts=message.started_ts.ToDatetime(tzinfo=UTC),
        finished_ts=message.finished_ts.ToDatetime(tzinfo=UTC),
        dead_pods=tuple(summary.dead_pods),
        orphaned_steps_found=summary.orphaned_steps_found,
        requeued_steps=tuple(summary.requeued_steps),
        terminal_steps=tuple(summary.terminal_steps),
        duration_ms=summary.duration_ms,
    )


def recovery_cycles(page_size: int = 0, page_token: str = "") -> Call[RecoveryCyclePage]:
    """One page of recovery cycles, newest first (page_size 0: the server's default, 20;
    at most 100); pass next_page_token back as `page_token` for the next."""
    return Call(
        "ListRecoveryCycles",
        pb.ListRecoveryCyclesRequest(page_size=page_size, page_token=page_token),
        lambda response: RecoveryCyclePage(
            cycles=tuple(_cycle(c) for c in response.cycles),
            next_page_token=response.next_page_token,
        ),
    )
