"""Free-form JSON values <-> protobuf Struct/Value, keeping integers integers.

`google.protobuf.Struct` stores every number as a double, and Python's `json_format`
renders each one as a float (`5` comes back as `5.0`). Go's protojson, whose output is
our REST contract, prints integral doubles without a fraction. We do the same: an
integral double within the exactly-representable range becomes an `int` when a handler
receives its args (the REST gateway does the same when it renders JSON).
"""

import math
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2

# Doubles represent every integer up to 2**53 exactly; beyond that an "integer" is a guess.
_MAX_EXACT_INT = 2**53


class TooManyValues(ValueError):
    """A Struct holds more JSON values than the budget it was converted under allows."""


class ValueBudget:
    """How many more JSON values (containers and scalars alike) a conversion may produce.

    Shared across the conversions of one request, so that the work a request costs is
    bounded by the count, whatever its shape: the walk stops at the first value too many.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.remaining = limit
        # Values parsed from JSON text and not yet counted, and at most how many they hold.
        self._held: list[Any] = []
        self._held_bound = 0

    def spend(self, count: int = 1) -> None:
        """Use `count` values; TooManyValues when fewer remain."""
        self.remaining -= count
        if self.remaining < 0:
            raise TooManyValues(f"more than {self.limit} JSON values")

    def spend_parsed(self, value: Any, text_length: int) -> None:
        """Use the values of `value`, parsed from JSON text `text_length` characters long.

        Counting them is a walk in Python that costs more than the parse did. A text holds
        at most (length + 1) // 2 values (a character for each, and a separator or bracket
        for each beyond the first), so the count waits until those bounds together could
        pass what remains; then every value held back is counted, exactly.
        """
        self._held.append(value)
        self._held_bound += (text_length + 1) // 2
        if self._held_bound > self.remaining:
            held, self._held, self._held_bound = self._held, [], 0
            self.spend(_count_values(held, self.remaining + 1))


def struct_to_dict(struct: struct_pb2.Struct, budget: ValueBudget | None = None) -> dict[str, Any]:
    """Convert a Struct to plain Python, integers as `int`.

    A direct walk rather than `json_format.MessageToDict` plus normalising: this runs for
    every submitted step and is several times faster. Raises ValueError on NaN or
    Infinity, which a Struct can carry but JSON cannot, and TooManyValues when `budget`
    runs out (the Struct itself counts as one value).
    """
    if budget is not None:
        budget.spend()
    return _members(struct, budget)


def value_to_python(value: struct_pb2.Value, budget: ValueBudget | None = None) -> Any:
    """Convert a Value to plain Python, integers as `int` (see struct_to_dict)."""
    if budget is not None:
        budget.spend()
    return _converted(value, budget)


# Each container spends the budget for all its items at once (one call per container, not
# per value), before converting any of them; every value is still counted exactly once.


def _members(struct: struct_pb2.Struct, budget: ValueBudget | None) -> dict[str, Any]:
    fields = struct.fields  # indexing by key beats the map's Python-level items() view
    if budget is not None:
        budget.spend(len(fields))
    return {key: _converted(fields[key], budget) for key in fields}


def _converted(value: struct_pb2.Value, budget: ValueBudget | None) -> Any:
    """A Value already paid for, as plain Python."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            raise ValueError("JSON numbers must be finite")
        return int(number) if number.is_integer() and abs(number) <= _MAX_EXACT_INT else number
    if kind == "string_value":
        return value.string_value
    if kind == "struct_value":
        return _members(value.struct_value, budget)
    if kind == "bool_value":
        return value.bool_value
    if kind == "list_value":
        items = value.list_value.values
        if budget is not None:
            budget.spend(len(items))
        return [_converted(item, budget) for item in items]
    return None  # null_value, or unset


def holds_more_values(values: Iterable[Any], limit: int) -> bool:
    """Whether `values` hold more than `limit` JSON values in all; stops counting there."""
    return _count_values(list(values), limit + 1) > limit


def _count_values(stack: list[Any], stop_at: int) -> int:
    """The JSON values in `stack`'s items (emptying it; tuples count as arrays), counted
    until there are at least `stop_at`. Scalars are counted by their container's length,
    not visited."""
    count = len(stack)
    while stack and count < stop_at:
        item = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        count += len(children)
        stack.extend(child for child in children if isinstance(child, dict | list | tuple))
    return count


def holds_non_finite(value: Any) -> bool:
    """Whether `value` holds a NaN or an infinity anywhere."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def dict_to_struct(data: Mapping[str, Any]) -> struct_pb2.Struct:
    """Convert a JSON object to a Struct."""
    struct = struct_pb2.Struct()
    fill_struct(struct, data)
    return struct


def fill_struct(struct: struct_pb2.Struct, data: Mapping[str, Any]) -> None:
    """Fill `struct`, a fresh Struct or a message's field, from a JSON object in place
    (cheaper than building a Struct apart and copying it in); the field is set even when
    `data` is empty. The same message as `Struct.update`, whose pure-Python isinstance
    chain per value was most of the cost of building a submit: dispatching on the exact
    type here takes half the time for one number, two fifths for mixed values.
    Types it does not know exactly (subclasses, tuples) go through `update` as before."""
    if not data:
        struct.SetInParent()
        return
    fields = struct.fields
    for key, value in data.items():
        kind = type(value)
        if kind is str:
            fields[key].string_value = value
        elif kind is int or kind is float:
            fields[key].number_value = value
        elif kind is dict:
            fill_struct(fields[key].struct_value, value)
        elif kind is bool:
            fields[key].bool_value = value
        elif value is None:
            fields[key].null_value = struct_pb2.NULL_VALUE
        elif kind is list:
            items = fields[key].list_value
            items.Clear()  # present even when empty, as update leaves it
            items.extend(value)
        else:
            struct.update({key: value})


def python_to_value(data: Any) -> struct_pb2.Value:
    """Convert any JSON value to a Value."""
    value = struct_pb2.Value()
    json_format.ParseDict(data, value)
    return value
