"""Response messages as grpc-gateway renders them (UseProtoNames + EmitUnpopulated).

`json_format.MessageToDict` with original field names and unpopulated fields, then the gaps
protojson's EmitUnpopulated fills are filled generically from the descriptor (unset message
fields and unset `optional` scalars become `null`), and integral doubles print as integers,
as Go's protojson does.
"""

import functools
import json
import math
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from fleetq_server.gateway.descriptor_facts import (
    INT_RANGES,
    JSON_VALUE_WKTS,
    WKT_PREFIX,
    is_map_entry,
    null_when_unset,
)

# Doubles represent every integer up to 2**53 exactly; beyond that an "integer" is a guess.
_MAX_EXACT_INT = 2**53


# Field types whose protojson form is the Python value itself: no int64 (a string in
# JSON), no float (NaN, integral doubles), no bytes (base64), no enum (its name).
_PLAIN_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_STRING,
        FieldDescriptor.TYPE_BOOL,
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_FIXED32,
    }
)


# How encode_message takes a field without json_format: its value as it is, or each item of
# a repeated message field encoded on its own.
_VALUE, _ITEMS = "value", "items"


@functools.cache
def _direct_fields(descriptor: Descriptor) -> tuple[tuple[str, str], ...] | None:
    """(name, how) for every field when each is a singular plain scalar without presence or
    a repeated plain message (e.g. a SubmitBatch's acknowledgements); None otherwise. Then
    the message's JSON is built field by field, and json_format's walk (most of the cost
    of an acknowledgement) runs at most for items that need it."""
    fields = []
    for field in descriptor.fields:
        message_type = field.message_type
        if field.type in _PLAIN_TYPES and not field.is_repeated and field.containing_oneof is None:
            fields.append((field.name, _VALUE))
        elif (
            field.is_repeated
            and message_type is not None
            and not is_map_entry(message_type)
            and not message_type.full_name.startswith(WKT_PREFIX)
        ):
            fields.append((field.name, _ITEMS))
        else:
            return None
    return tuple(fields)


def encode_message(message: Message) -> dict[str, Any]:
    """A message as grpc-gateway renders it with UseProtoNames + EmitUnpopulated.

    Fields come in field-number order; unset message fields and unset `optional`
    scalars are null; integral doubles (Struct numbers included) are integers.
    """
    descriptor = cast(Descriptor, message.DESCRIPTOR)
    direct = _direct_fields(descriptor)
    if direct is not None:
        # Each item of a repeated field renders as the message would alone: json_format's
        # nested dict, filled and normalised, is exactly that.
        return {
            name: getattr(message, name)
            if how is _VALUE
            else [encode_message(item) for item in getattr(message, name)]
            for name, how in direct
        }
    data = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    filled = _fill_unpopulated(descriptor, data)
    result: dict[str, Any] = normalise_numbers(filled)
    return result


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, refusing NaN/Infinity (they are not JSON)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _fill_unpopulated(descriptor: Descriptor, data: dict[str, Any]) -> dict[str, Any]:
    if descriptor.full_name in JSON_VALUE_WKTS:
        return {key: _sorted_json(data[key]) for key in sorted(data)}
    if descriptor.full_name.startswith(WKT_PREFIX):
        return data  # other well-known types have their own JSON forms; leave them alone
    result: dict[str, Any] = {}
    for field in descriptor.fields:
        name = field.name
        if name not in data:
            if null_when_unset(field):
                result[name] = None
            continue
        result[name] = _fill_field(field, data[name])
    for key, value in data.items():  # extensions, if any, keep their place at the end
        result.setdefault(key, value)
    return result


def _fill_field(field: FieldDescriptor, value: Any) -> Any:
    message_type = field.message_type
    if message_type is None or value is None:
        return value
    if is_map_entry(message_type):
        # Sorted keys, as Go's protojson writes maps: output is deterministic.
        key_field = message_type.fields_by_name["key"]
        value_type = message_type.fields_by_name["value"].message_type
        keys = sorted(value, key=int) if key_field.type in INT_RANGES else sorted(value)
        return {key: _fill_message(value_type, value[key]) for key in keys}
    if field.is_repeated:
        return [_fill_message(message_type, item) for item in value]
    return _fill_message(message_type, value)


def _fill_message(descriptor: Descriptor | None, value: Any) -> Any:
    if descriptor is None:
        return value
    if descriptor.full_name in JSON_VALUE_WKTS:
        return _sorted_json(value)
    return _fill_unpopulated(descriptor, value) if isinstance(value, dict) else value


def _sorted_json(value: Any) -> Any:
    """Struct/Value contents with object keys sorted, like protojson (Struct is a map)."""
    if isinstance(value, dict):
        return {key: _sorted_json(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted_json(item) for item in value]
    return value


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
