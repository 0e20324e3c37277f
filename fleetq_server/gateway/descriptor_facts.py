"""What the gateway knows about descriptors, shared by decoding, encoding and the OpenAPI
schemas: the well-known types and their JSON forms, integer ranges, wrappers, presence."""

import re
from collections.abc import Mapping
from typing import TypeGuard

from google.protobuf.descriptor import Descriptor, FieldDescriptor

WKT_PREFIX = "google.protobuf."
STRING_WKTS = frozenset(f"{WKT_PREFIX}{name}" for name in ("Timestamp", "Duration", "FieldMask"))
JSON_VALUE_WKTS = frozenset(f"{WKT_PREFIX}{name}" for name in ("Struct", "Value", "ListValue"))
WRAPPERS = frozenset(
    f"{WKT_PREFIX}{name}"
    for name in (
        "DoubleValue",
        "FloatValue",
        "Int64Value",
        "UInt64Value",
        "Int32Value",
        "UInt32Value",
        "BoolValue",
        "StringValue",
        "BytesValue",
    )
)
INT_RANGES: Mapping[int, tuple[int, int]] = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_FIXED64,
    }
)
FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})
INTEGER_TEXT = re.compile(r"[-+]?[0-9]+")


def is_wrapper(descriptor: Descriptor) -> bool:
    """Whether the message is a google.protobuf wrapper (`Int32Value`, ...): JSON shows its
    `value` alone."""
    return descriptor.full_name in WRAPPERS


def is_map_entry(descriptor: Descriptor | None) -> TypeGuard[Descriptor]:
    """Whether the message is the synthetic entry type of a `map<K, V>` field."""
    return descriptor is not None and descriptor.GetOptions().map_entry


def is_value_type(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.full_name == (f"{WKT_PREFIX}Value")


def in_real_oneof(field: FieldDescriptor) -> bool:
    """Whether the field is in a real oneof, a choice between two or more fields: such a
    field is left out of a response while unset. A oneof of one field only says whether
    that field is set (proto3 `optional` is one, synthetic; our proto writes them out for
    grpc-gateway v1's generators), so it is presence, not a choice."""
    oneof = field.containing_oneof
    return oneof is not None and len(oneof.fields) > 1


def null_when_unset(field: FieldDescriptor) -> bool:
    """Whether a response shows the field as null while unset: singular message fields and
    fields with presence (a one-field oneof, proto3 `optional`), as grpc-gateway's
    EmitUnpopulated shows `optional`; others get a default."""
    if in_real_oneof(field):
        return False
    is_message = field.message_type is not None and not field.is_repeated
    return is_message or field.containing_oneof is not None
