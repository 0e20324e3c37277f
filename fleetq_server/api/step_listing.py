"""ListSteps: request checks, opaque page tokens, and the page as status messages."""

import functools
from datetime import UTC, datetime

from fleetq.v1 import fleetq_pb2 as pb
from google.protobuf import timestamp_pb2

from fleetq_server import errors
from fleetq_server.api import messages, page_tokens
from fleetq_server.api.offload import off_loop
from fleetq_server.store.ports import ListPort
from fleetq_server.store.records import StepListFilter, StepListPosition, StepRecord

STATUSES = ("pending", "claimed", "completed", "failed", "cancelled")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# The request's field rules, as the proto (and so the OpenAPI document) states them.
_RULES = {
    field.name: field.GetOptions().Extensions[pb.rules]
    for field in pb.ListStepsRequest.DESCRIPTOR.fields
}


def encode_token(position: StepListPosition) -> str:
    """An opaque token for the position after `position`."""
    return page_tokens.encode_position(position.created_ts, position.step_id)


def decode_token(token: str) -> StepListPosition:
    """The position a token names; ValidationError for anything this service did not
    issue."""
    return StepListPosition(*page_tokens.decode_position(token))


def _time(request: pb.ListStepsRequest, field: str) -> datetime | None:
    if not request.HasField(field):  # type: ignore[arg-type]
        return None
    stamp: timestamp_pb2.Timestamp = getattr(request, field)
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise errors.ValidationError(f"{field}: is not a valid time") from None


def _text(request: pb.ListStepsRequest, field: str) -> str | None:
    """A text filter, checked against its `(fleetq.v1.rules)` length; None when empty."""
    value: str = getattr(request, field)
    limit = _RULES[field].max_length
    if len(value) > limit:
        raise errors.ValidationError(f"{field}: must be at most {limit} characters")
    if "\x00" in value:
        raise errors.ValidationError(f"{field}: must not contain NUL characters")
    return value or None


def list_filter(request: pb.ListStepsRequest) -> StepListFilter:
    """The request's filters, checked: each error names its parameter."""
    if len(request.status) > _RULES["status"].max_items:
        raise errors.ValidationError(f"status: at most {_RULES['status'].max_items} values")
    unknown = [status for status in request.status if status not in STATUSES]
    if unknown:
        raise errors.ValidationError(
            f"status: unknown value {unknown[0]!r}; expected one of {', '.join(STATUSES)}"
        )
    return StepListFilter(
        statuses=tuple(dict.fromkeys(request.status)),
        type=_text(request, "type"),
        created_after=_time(request, "created_after"),
        created_before=_time(request, "created_before"),
        idempotency_key=_text(request, "idempotency_key"),
    )


def page_size(request: pb.ListStepsRequest) -> int:
    """The page size asked for: 0 is the default, anything above the maximum the maximum."""
    if request.page_size < 0:
        raise errors.ValidationError("page_size: must be 0 or more")
    return min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _page(steps: list[StepRecord], size: int) -> pb.ListStepsResponse:
    response = pb.ListStepsResponse(steps=[messages.step_status(s) for s in steps[:size]])
    if len(steps) > size:
        last = steps[size - 1]
        response.next_page_token = encode_token(StepListPosition(last.created_ts, last.step_id))
    return response


async def list_steps(store: ListPort, request: pb.ListStepsRequest) -> pb.ListStepsResponse:
    """One page: one step more than asked is read, to know whether another page follows."""
    where = list_filter(request)
    size = page_size(request)
    after = decode_token(_text(request, "page_token") or "") if request.page_token else None
    steps = await store.step_list_page(where, after, size + 1)
    build = functools.partial(_page, steps, size)
    large = len(steps) > 20 or any(messages.is_large(step) for step in steps)
    return await off_loop(build) if large else build()
