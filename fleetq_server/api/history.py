"""What the fleet did lately: GetThroughput (steps finished per minute) and
ListRecoveryCycles (the recorded recovery cycles); request checks and messages."""

from fleetq.v1 import fleetq_pb2 as pb

from fleetq_server import errors
from fleetq_server.api import messages, page_tokens
from fleetq_server.store.ports import StatsPort
from fleetq_server.store.records import RecoveryRecord, RecoveryRecordPosition
from fleetq_server.submission import rules_of

DEFAULT_MINUTES = 60
DEFAULT_CYCLES_PAGE_SIZE = 20
_MINUTES = rules_of(pb.GetThroughputRequest, "minutes")
_PAGE_SIZE = rules_of(pb.ListRecoveryCyclesRequest, "page_size")
_PAGE_TOKEN = rules_of(pb.ListRecoveryCyclesRequest, "page_token")


def _in_rules(name: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise errors.ValidationError(f"{name}: must be between {low} and {high}")
    return value


async def get_throughput(
    store: StatsPort, request: pb.GetThroughputRequest
) -> pb.GetThroughputResponse:
    """The series of the minutes asked for (DEFAULT_MINUTES when unset)."""
    minutes = DEFAULT_MINUTES
    if request.HasField("minutes"):
        minutes = _in_rules("minutes", request.minutes, _MINUTES.minimum, _MINUTES.maximum)
    series = await store.throughput_list(minutes)
    return pb.GetThroughputResponse(
        minutes=[
            pb.ThroughputMinute(
                minute_ts=messages.timestamp(m.minute_ts),
                completed_steps=m.completed,
                failed_steps=m.failed,
            )
            for m in series
        ]
    )


def _cycle(record: RecoveryRecord) -> pb.RecoveryCycle:
    return pb.RecoveryCycle(
        recovery_summary=messages.recovery_summary(record.outcome),
        leader_pod_id=record.leader_pod_id,
        trigger=record.trigger,
        started_ts=messages.timestamp(record.started_ts),
        finished_ts=messages.timestamp(record.finished_ts),
    )


def _after(token: str) -> RecoveryRecordPosition | None:
    if not token:
        return None
    if len(token) > _PAGE_TOKEN.max_length:
        raise errors.ValidationError("page_token: is not a token this service issued")
    return RecoveryRecordPosition(*page_tokens.decode_position(token))


async def list_recovery_cycles(
    store: StatsPort, request: pb.ListRecoveryCyclesRequest
) -> pb.ListRecoveryCyclesResponse:
    """One page, newest first: one cycle more than asked is read, to know whether another
    page follows."""
    size = _in_rules("page_size", request.page_size, _PAGE_SIZE.minimum, _PAGE_SIZE.maximum)
    size = size or DEFAULT_CYCLES_PAGE_SIZE
    after = _after(request.page_token)
    records = await store.recovery_record_list_page(after, size + 1)
    response = pb.ListRecoveryCyclesResponse(cycles=[_cycle(r) for r in records[:size]])
    if len(records) > size:
        last = records[size - 1]
        response.next_page_token = page_tokens.encode_position(
            last.finished_ts, last.outcome.cycle_id
        )
    return response
