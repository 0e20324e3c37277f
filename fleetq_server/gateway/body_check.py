"""Checking a parsed JSON body against a message descriptor, before `json_format` runs.

Unknown, repeated and wrongly typed fields are refused with a DecodeError naming the field
("field "priority" must be an integer, got string"), where `json_format.ParseDict` alone
would leak Python internals.
"""

from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from fleetq_server.gateway.descriptor_facts import (
    FLOAT_TYPES,
    INT64_TYPES,
    INT_RANGES,
    INTEGER_TEXT,
    STRING_WKTS,
    WKT_PREFIX,
    WRAPPERS,
    is_map_entry,
    is_value_type,
)
from fleetq_server.gateway.json_parse import DecodeError, json_kind, quote


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def check_message(descriptor: Descriptor, value: dict[str, Any], where: str) -> None:
    """Reject unknown, duplicated and wrongly typed fields with a message naming each."""
    seen: dict[str, str] = {}
    for key, item in value.items():
        field = descriptor.fields_by_name.get(key)
        if field is None:
            field = next((f for f in descriptor.fields if f.json_name == key), None)
        if field is None:
            expected = ", ".join(f.name for f in descriptor.fields)
            raise DecodeError(
                f"unknown field {quote(_join(where, key))}; expected one of: {expected}"
                if expected
                else f"unknown field {quote(_join(where, key))}; this message has no fields"
            )
        if field.name in seen:
            raise DecodeError(
                f"field {quote(_join(where, field.name))} is given twice "
                f"(as {quote(seen[field.name])} and {quote(key)})"
            )
        seen[field.name] = key
        check_field(field, item, _join(where, field.name))


def check_field(field: FieldDescriptor, value: Any, where: str) -> None:
    if value is None:
        return  # null means "unset" for every field
    message_type = field.message_type
    if is_map_entry(message_type):
        if not isinstance(value, dict):
            raise DecodeError(f"field {quote(where)} must be a JSON object, got {json_kind(value)}")
        key_field = message_type.fields_by_name["key"]
        value_field = message_type.fields_by_name["value"]
        for key, item in value.items():
            item_where = f"{where}[{key}]"
            _check_map_key(key_field, key, item_where)
            if item is None and not is_value_type(value_field):
                raise DecodeError(f"field {quote(item_where)} must not be null")
            _check_single(value_field, item, item_where)
        return
    if field.is_repeated:
        if not isinstance(value, list):
            raise DecodeError(f"field {quote(where)} must be a JSON array, got {json_kind(value)}")
        for index, item in enumerate(value):
            item_where = f"{where}[{index}]"
            if item is None and not is_value_type(field):
                raise DecodeError(f"field {quote(item_where)} must not be null")
            _check_single(field, item, item_where)
        return
    _check_single(field, value, where)


def _check_map_key(key_field: FieldDescriptor, key: str, where: str) -> None:
    if key_field.type in INT_RANGES and not INTEGER_TEXT.fullmatch(key):
        raise DecodeError(f"field {quote(where)}: map key must be an integer")
    if key_field.type == FieldDescriptor.TYPE_BOOL and key not in ("true", "false"):
        raise DecodeError(f"field {quote(where)}: map key must be true or false")


def _check_single(field: FieldDescriptor, value: Any, where: str) -> None:
    """Check one (non-repeated) value against the field's type."""
    if value is None:
        return
    message_type = field.message_type
    if message_type is None:
        _check_scalar(field, value, where)
        return
    name = message_type.full_name
    if name in WRAPPERS:
        _check_scalar(message_type.fields_by_name["value"], value, where)
    elif name in STRING_WKTS:
        _expect(isinstance(value, str), "a string", value, where)
        _check_time_text(name, value, where)
    elif name == f"{WKT_PREFIX}ListValue":
        _expect(isinstance(value, list), "a JSON array", value, where)
    elif name in (f"{WKT_PREFIX}Struct", f"{WKT_PREFIX}Any", f"{WKT_PREFIX}Empty"):
        _expect(isinstance(value, dict), "a JSON object", value, where)
    elif name.startswith(WKT_PREFIX):
        return  # Value (any JSON) and anything exotic: ParseDict decides
    else:
        _expect(isinstance(value, dict), "a JSON object", value, where)
        check_message(message_type, value, where)


def _check_scalar(field: FieldDescriptor, value: Any, where: str) -> None:
    kind = field.type
    if kind == FieldDescriptor.TYPE_BOOL:
        _expect(isinstance(value, bool), "true or false", value, where)
    elif kind in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        _expect(isinstance(value, str), "a string", value, where)
    elif kind == FieldDescriptor.TYPE_ENUM:
        is_enum = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
        _expect(is_enum, "an enum name or number", value, where)
    elif kind in FLOAT_TYPES:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        _expect(is_number, "a number", value, where)
    elif kind in INT_RANGES:
        _check_integer(kind, value, where)


def _check_integer(kind: int, value: Any, where: str) -> None:
    if kind in INT64_TYPES and isinstance(value, str):
        _expect(bool(INTEGER_TEXT.fullmatch(value)), "an integer", value, where)
        value = int(value)
    is_integer = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer()
    )
    _expect(is_integer, "an integer", value, where)
    low, high = INT_RANGES[kind]
    if not low <= value <= high:
        shown = f", got {int(value)}" if abs(value) < 10**20 else ""
        raise DecodeError(f"field {quote(where)} must be between {low} and {high}{shown}")


def _check_time_text(name: str, text: str, where: str) -> None:
    """Timestamp and Duration strings, checked here for a message clients can act on."""
    try:
        if name == f"{WKT_PREFIX}Timestamp":
            timestamp_pb2.Timestamp().FromJsonString(text)
        elif name == f"{WKT_PREFIX}Duration":
            duration_pb2.Duration().FromJsonString(text)
    except ValueError:
        example = "2024-01-01T12:00:00Z" if name.endswith("Timestamp") else "1.5s"
        raise DecodeError(
            f"field {quote(where)} must be {name.removeprefix(WKT_PREFIX).lower()} text "
            f"such as {quote(example)}, got {quote(text)}"
        ) from None


def _expect(ok: bool, expected: str, value: Any, where: str) -> None:
    if not ok:
        raise DecodeError(f"field {quote(where)} must be {expected}, got {json_kind(value)}")
