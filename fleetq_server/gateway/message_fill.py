"""Setting a checked JSON object into a request message without `json_format` where that is
plain assignment.

`json_format.ParseDict` is pure Python and walks every JSON value through several calls;
for a SubmitStep body it was the largest part of the gateway's decoding. The fields whose
JSON form is the Python value itself (strings, booleans, integers, doubles), Structs (whose
C-backed `update()` builds the same message as ParseDict: numbers as doubles, nulls as
null_value, nested lists and objects) and plain nested messages are set here directly; every
other field (enums, bytes, well-known types, maps, real oneofs, nulls, any value of an
unexpected kind) is left for ParseDict, which keeps its exact semantics and refusals.

Only run on values `body_check` accepted: ranges and kinds are checked there.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from enum import Enum
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from fleetq_server.gateway.descriptor_facts import (
    INT_RANGES,
    WKT_PREFIX,
    in_real_oneof,
    is_map_entry,
)


class _Kind(Enum):
    """How a field's JSON value is set: by assignment, or in place for message kinds."""

    TEXT = "text"
    BOOL = "bool"
    INTEGER = "integer"
    DOUBLE = "double"
    STRUCT = "struct"
    MESSAGE = "message"
    MESSAGES = "messages"


@functools.cache
def _kinds(descriptor: Descriptor) -> Mapping[str, _Kind]:
    """The fields of `descriptor` (by proto name) that are set here, with how; computed once
    per message type."""
    kinds: dict[str, _Kind] = {}
    for field in descriptor.fields:
        kind = _kind(field)
        if kind is not None and not in_real_oneof(field):  # ParseDict refuses two of a oneof
            kinds[field.name] = kind
    return kinds


def _kind(field: FieldDescriptor) -> _Kind | None:
    message_type = field.message_type
    if message_type is not None:
        name = message_type.full_name
        if is_map_entry(message_type) or (name.startswith(WKT_PREFIX) and field.is_repeated):
            return None
        if name == f"{WKT_PREFIX}Struct":
            return _Kind.STRUCT
        if name.startswith(WKT_PREFIX):
            return None
        return _Kind.MESSAGES if field.is_repeated else _Kind.MESSAGE
    if field.is_repeated:
        return None
    if field.type == FieldDescriptor.TYPE_STRING:
        return _Kind.TEXT
    if field.type == FieldDescriptor.TYPE_BOOL:
        return _Kind.BOOL
    if field.type in INT_RANGES:
        return _Kind.INTEGER
    if field.type == FieldDescriptor.TYPE_DOUBLE:
        return _Kind.DOUBLE
    return None


def fill_message(message: Message, value: Mapping[str, Any]) -> None:
    """Set `value` (a checked JSON object) into `message`; json_format.ParseError as
    ParseDict would raise it for a field left to ParseDict."""
    kinds = _kinds(message.DESCRIPTOR)
    rest: dict[str, Any] = {}
    for key, item in value.items():
        kind = kinds.get(key)  # a json_name key is not in the table: ParseDict takes it
        if kind is None or not _fits(kind, item):
            rest[key] = item
        elif kind is _Kind.STRUCT:
            struct = getattr(message, key)
            if item:
                struct.update(item)
            else:
                struct.SetInParent()
        elif kind is _Kind.MESSAGE or kind is _Kind.MESSAGES:
            _fill_nested(message, key, kind, item)
        else:
            try:
                setattr(message, key, item)
            except (ValueError, TypeError):  # out of the field's range: ParseDict words it
                rest[key] = item
    if rest:
        json_format.ParseDict(rest, message, ignore_unknown_fields=False)


def _fill_nested(message: Message, key: str, kind: _Kind, item: Any) -> None:
    """A message field, or a repeated one, filled in place; a refusal inside is worded as
    ParseDict words it, naming the outer field first."""
    try:
        if kind is _Kind.MESSAGE:
            nested = getattr(message, key)
            nested.SetInParent()
            fill_message(nested, item)
            return
        container = getattr(message, key)
        del container[:]  # as ParseDict: a repeated field holds the JSON array's items only
        for element in item:
            fill_message(container.add(), element)
    except json_format.ParseError as error:
        raise json_format.ParseError(f"Failed to parse {key} field: {error}") from None


def _fits(kind: _Kind, item: Any) -> bool:
    """Whether `item` has the one Python type assignment takes for `kind`; anything else
    (a null, an integral float for an integer, an int64 as a string) goes to ParseDict."""
    if kind is _Kind.TEXT:
        return type(item) is str
    if kind is _Kind.BOOL:
        return type(item) is bool
    if kind is _Kind.INTEGER:
        return type(item) is int
    if kind is _Kind.DOUBLE:
        return type(item) is float or type(item) is int
    if kind is _Kind.MESSAGES:
        return type(item) is list and all(type(element) is dict for element in item)
    return type(item) is dict
