"""JSON Schemas of messages and fields, following the proto3 JSON mapping as the gateway
applies it: original field names; responses carry every field, with unset message and
`optional` fields as null; requests may leave out or null any field (null means unset).

Rules a descriptor's types cannot say (lengths, patterns, ranges) come in as JSON Schema
keywords per full field name, from whoever composes the document.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from fleetq_server.gateway.descriptor_facts import (
    INT_RANGES,
    WKT_PREFIX,
    in_real_oneof,
    is_map_entry,
    is_wrapper,
    null_when_unset,
)
from fleetq_server.gateway.routes import Route


def _integer(kind: int, fmt: str) -> dict[str, Any]:
    low, high = INT_RANGES[kind]
    return {"type": "integer", "format": fmt, "minimum": low, "maximum": high}


_INT32 = _integer(FieldDescriptor.TYPE_INT32, "int32")
_UINT32 = _integer(FieldDescriptor.TYPE_UINT32, "uint32")
_INT64 = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
_UINT64 = {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}
_SCALARS: Mapping[int, Mapping[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32,
    FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: _UINT64,
    FieldDescriptor.TYPE_FIXED64: _UINT64,
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte", "contentEncoding": "base64"},
}
# Well-known types with a JSON form of their own (wrappers are recognised by shape).
_WELL_KNOWN: Mapping[str, Mapping[str, Any]] = {
    f"{WKT_PREFIX}Struct": {"type": "object"},
    f"{WKT_PREFIX}Value": {},  # any JSON value, null included
    f"{WKT_PREFIX}ListValue": {"type": "array"},
    f"{WKT_PREFIX}Timestamp": {"type": "string", "format": "date-time"},
    f"{WKT_PREFIX}Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    f"{WKT_PREFIX}FieldMask": {"type": "string"},
    f"{WKT_PREFIX}Empty": {"type": "object", "maxProperties": 0},
    f"{WKT_PREFIX}Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
    },
}

# Map keys are JSON object keys: integers and booleans appear as their text.
_MAP_KEY_NAMES: Mapping[int, Mapping[str, Any]] = {
    **{kind: {"pattern": "^-?[0-9]+$"} for kind in INT_RANGES},
    FieldDescriptor.TYPE_BOOL: {"enum": ["true", "false"]},
}


class Direction(enum.Enum):
    """Requests and responses differ: which fields must appear, and whether null may."""

    REQUEST = "request"
    RESPONSE = "response"


def nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    if not schema:
        return {}  # any JSON value: null already included
    kind = schema.get("type")
    if isinstance(kind, str) and "enum" not in schema:
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [dict(schema), {"type": "null"}]}


def _is_required(field: FieldDescriptor) -> bool:
    """Marked `(google.api.field_behavior) = REQUIRED` in the proto."""
    behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    return field_behavior_pb2.REQUIRED in behaviors


class Schemas:
    """Builds JSON Schemas for fields and collects message schemas as components.

    A message used in both directions gets two components: `<full name>` describes the
    response, `<full name>Input` the request.
    """

    def __init__(self, routes: Iterable[Route], rules: Mapping[str, Mapping[str, Any]]) -> None:
        routes = list(routes)
        self._rules = rules
        inputs = reachable_messages(route.method.input_type for route in routes)
        outputs = reachable_messages(route.method.output_type for route in routes)
        self._both_ways = inputs & outputs
        self.components: dict[str, dict[str, Any]] = {}

    def message_ref(self, descriptor: Descriptor, direction: Direction) -> dict[str, Any]:
        name = descriptor.full_name
        if direction is Direction.REQUEST and name in self._both_ways:
            name += "Input"
        if name not in self.components:
            self.components[name] = {}  # claimed first: a recursive message refers to itself
            self.components[name] = self._message_schema(descriptor, direction)
        return {"$ref": f"#/components/schemas/{name}"}

    def field_schema(self, field: FieldDescriptor, direction: Direction) -> dict[str, Any]:
        """The schema of a field as it appears in its message."""
        message_type = field.message_type
        if is_map_entry(message_type):
            schema = self._map_schema(message_type, direction)
        elif field.is_repeated:
            schema = {"type": "array", "items": self.value_schema(field, direction)}
        else:
            schema = self.value_schema(field, direction)
        if direction is Direction.REQUEST:
            schema = nullable(self._with_rules(field, schema))
        elif null_when_unset(field):
            schema = nullable(schema)
        return schema

    def value_schema(self, field: FieldDescriptor, direction: Direction) -> dict[str, Any]:
        """The schema of one value of the field's type (an element, if it is repeated)."""
        message_type = field.message_type
        if message_type is None:
            if field.enum_type is not None:
                return {"type": "string", "enum": [value.name for value in field.enum_type.values]}
            return dict(_SCALARS[field.type])
        name = message_type.full_name
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if is_wrapper(message_type):  # JSON shows a wrapper's value alone
            return self.value_schema(message_type.fields_by_name["value"], direction)
        return self.message_ref(message_type, direction)

    def parameter_schema(self, field: FieldDescriptor) -> dict[str, Any]:
        """A path or query parameter: repeated fields take the parameter several times."""
        schema = self.value_schema(field, Direction.REQUEST)
        if field.is_repeated:
            schema = {"type": "array", "items": schema}
        return self._with_rules(field, schema)

    def _with_rules(self, field: FieldDescriptor, schema: dict[str, Any]) -> dict[str, Any]:
        return {**schema, **self._rules.get(field.full_name, {})}

    def _message_schema(self, descriptor: Descriptor, direction: Direction) -> dict[str, Any]:
        fields = descriptor.fields
        if direction is Direction.RESPONSE:  # every field is emitted, unset ones too
            required = [f.name for f in fields if not in_real_oneof(f)]
        else:
            required = [f.name for f in fields if _is_required(f)]
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {f.name: self.field_schema(f, direction) for f in fields},
            "additionalProperties": False,
        }
        if required:
            schema["required"] = required
        return schema

    def _map_schema(self, entry: Descriptor, direction: Direction) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": self.value_schema(entry.fields_by_name["value"], direction),
        }
        key_names = _MAP_KEY_NAMES.get(entry.fields_by_name["key"].type)
        if key_names is not None:
            schema["propertyNames"] = dict(key_names)
        return schema


def reachable_messages(roots: Iterable[Descriptor]) -> frozenset[str]:
    """Full names of the messages (well-known types aside) reachable from `roots`."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        descriptor = stack.pop()
        name = descriptor.full_name
        if name in seen or name.startswith(WKT_PREFIX):
            continue
        seen.add(name)
        stack.extend(f.message_type for f in descriptor.fields if f.message_type is not None)
    return frozenset(seen)
