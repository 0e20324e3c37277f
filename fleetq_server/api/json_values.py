"""Free-form JSON values <-> protobuf Struct/Value, keeping integers integers.

`google.protobuf.Struct` stores every number as a double, and Python's `json_format`
renders each one as a float (`5` comes back as `5.0`). Go's protojson, whose output is
our REST contract, prints integral doubles without a fraction. We do the same: an
integral double within the exactly-representable range becomes an `int`, both when a
handler receives its args and when JSON is rendered.
"""

import math
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2

# Doubles represent every integer up to 2**53 exactly; beyond that an "integer" is a guess.
_MAX_EXACT_INT = 2**53


def normalise_numbers(value: Any) -> Any:
    """Return `value` with integral floats turned into ints, recursively."""
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) <= _MAX_EXACT_INT:
            return int(value)
        return value
    if isinstance(value, dict):
        return {key: normalise_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalise_numbers(item) for item in value]
    return value


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """Convert a Struct to plain Python, integers as `int`."""
    result: dict[str, Any] = normalise_numbers(json_format.MessageToDict(struct))
    return result


def value_to_python(value: struct_pb2.Value) -> Any:
    """Convert a Value to plain Python, integers as `int`."""
    return normalise_numbers(json_format.MessageToDict(value))


def dict_to_struct(data: Mapping[str, Any]) -> struct_pb2.Struct:
    """Convert a JSON object to a Struct."""
    struct = struct_pb2.Struct()
    struct.update(data)
    return struct


def python_to_value(data: Any) -> struct_pb2.Value:
    """Convert any JSON value to a Value."""
    value = struct_pb2.Value()
    json_format.ParseDict(data, value)
    return value
