"""A request's JSON object field, given as a Struct or as JSON text, as plain JSON counted
against the request's value budget."""

import re
from typing import Any

import orjson
from google.protobuf.message import Message

from fleetq_common.json_values import TooManyValues, ValueBudget, struct_to_dict
from fleetq_server import errors
from fleetq_server.gateway.json_parse import MAX_JSON_DEPTH, members_within
from fleetq_server.gateway.response_encoding import normalise_numbers

# The depth a REST body's args or metadata may reach (the body itself is the first level):
# what fits a Struct that gRPC can still decode inside a step's status.
_MAX_DEPTH = MAX_JSON_DEPTH - 1
# A digit before "." or an exponent: a number that may be an integral double, which a
# Struct (and so REST) would have made an integer. Strings that look alike cost a walk.
_MAYBE_DOUBLE = re.compile(r"\d[.eE]")


def json_object(request: Message, field: str, budget: ValueBudget) -> dict[str, Any] | None:
    """`request.<field>` (a Struct) as plain JSON, None when unset. A Struct may hold NaN or
    infinities (gRPC clients can send them); JSON cannot, so they are the client's error.
    The walk stops at the first value past the request's budget."""
    if not request.HasField(field):
        return None
    try:
        return struct_to_dict(getattr(request, field), budget)
    except TooManyValues:
        raise _too_many(field, budget) from None
    except ValueError:
        raise errors.ValidationError(
            f"{field}: numbers must be finite (no NaN or Infinity)"
        ) from None


def json_object_or_text(
    request: Message, field: str, text: str, budget: ValueBudget
) -> dict[str, Any] | None:
    """`request.<field>`, sent as a Struct or as JSON text in `<field>_json` (`text`), as
    plain JSON; None when neither is set."""
    if not text:
        return json_object(request, field, budget)
    if request.HasField(field):
        raise errors.ValidationError(f"{field}: give {field} or {field}_json, not both")
    try:
        value = orjson.loads(text)  # refuses NaN, infinities and lone surrogates
    except orjson.JSONDecodeError as exc:
        raise errors.ValidationError(f"{field}_json: is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise errors.ValidationError(f"{field}_json: must be a JSON object")
    try:
        budget.spend_parsed(value, len(text))  # first: it bounds the walks below
    except TooManyValues:
        raise _too_many(field, budget) from None
    # Only a text with enough brackets can be too deep, and only one with a digit before a
    # "." or an exponent can hold a double: most payloads skip both walks.
    may_be_deep = text.count("{") + text.count("[") > _MAX_DEPTH
    if may_be_deep and members_within(value, _MAX_DEPTH) is None:
        raise errors.ValidationError(f"{field}_json: nests more than {_MAX_DEPTH} levels deep")
    if _MAYBE_DOUBLE.search(text):
        normalised: dict[str, Any] = normalise_numbers(value)
        return normalised
    return value


def _too_many(field: str, budget: ValueBudget) -> errors.ValidationError:
    return errors.ValidationError(
        f"{field}: args and metadata may hold at most {budget.limit} JSON values per request"
    )
