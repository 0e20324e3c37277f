"""A request's Struct field as plain JSON, counted against the request's value budget."""

from typing import Any

from google.protobuf.message import Message

from fleetq_common.json_values import TooManyValues, ValueBudget, struct_to_dict
from fleetq_server import errors


def json_object(request: Message, field: str, budget: ValueBudget) -> dict[str, Any] | None:
    """`request.<field>` (a Struct) as plain JSON, None when unset. A Struct may hold NaN or
    infinities (gRPC clients can send them); JSON cannot, so they are the client's error.
    The walk stops at the first value past the request's budget."""
    if not request.HasField(field):
        return None
    try:
        return struct_to_dict(getattr(request, field), budget)
    except TooManyValues:
        raise errors.ValidationError(
            f"{field}: args and metadata may hold at most {budget.limit} JSON values per request"
        ) from None
    except ValueError:
        raise errors.ValidationError(
            f"{field}: numbers must be finite (no NaN or Infinity)"
        ) from None
