"""Proto3 JSON in and out of the gateway, shaped like grpc-gateway's output.

Requests: body bytes, path variables and query parameters become one request message,
following the method's google.api.http rule. Everything a client can get wrong is caught
here and raised as `DecodeError`, whose `detail` is safe to show and names the field.
The body is checked against the message descriptor before `json_format.ParseDict` runs, so
a wrong JSON type yields "field "priority" must be an integer, got string" rather than a
Python exception text.

Responses: `json_format.MessageToDict` with original field names and unpopulated fields,
then the gaps protojson's EmitUnpopulated fills are filled generically from the
descriptor (unset message fields and unset `optional` scalars become `null`), and
`normalise_numbers` makes integral doubles print as integers, as Go's protojson does.
"""

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, cast
from urllib.parse import parse_qsl

from google.protobuf import descriptor_pb2, duration_pb2, json_format, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from fleetq_common.json_values import normalise_numbers

# Deepest JSON nesting accepted in a request body (the top-level object is level 1).
# Each JSON level inside a google.protobuf.Struct costs three protobuf message levels, and
# gRPC's binary decoder stops at 100: a cap of 32 keeps every body the REST side accepts
# also sendable over gRPC, and also readable back inside a larger response message.
MAX_JSON_DEPTH = 32
# Query strings with more parameters than this are refused outright.
MAX_QUERY_PARAMETERS = 100

_WKT_PREFIX = "google.protobuf."
_STRING_WKTS = frozenset(f"{_WKT_PREFIX}{name}" for name in ("Timestamp", "Duration", "FieldMask"))
_JSON_VALUE_WKTS = frozenset(f"{_WKT_PREFIX}{name}" for name in ("Struct", "Value", "ListValue"))
_WRAPPERS = frozenset(
    f"{_WKT_PREFIX}{name}"
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
_INT_RANGES: Mapping[int, tuple[int, int]] = {
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
_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_FIXED64,
    }
)
_FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})
_INTEGER_TEXT = re.compile(r"[-+]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_TRUE_TEXT = frozenset({"true", "True", "TRUE", "t", "T", "1"})
_FALSE_TEXT = frozenset({"false", "False", "FALSE", "f", "F", "0"})
_PARSE_ERROR_FIELD = re.compile(r"^Failed to parse (\w+) field: ")
# A body can only hold a surrogate through a \uD800-\uDFFF escape: look for one before
# walking the parsed value.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class DecodeError(Exception):
    """The request cannot become a message; `detail` says why, for the client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BindingError(ValueError):
    """An http rule this gateway cannot honour for its request message; raised at start-up."""


# ---------------------------------------------------------------------------- requests


def parse_json(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a request body strictly: UTF-8, finite numbers, no duplicate keys, capped depth.

    An empty (or all-whitespace) body parses as None.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("request body is not valid UTF-8") from None
    if not text.strip():
        return None
    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_parse_float,
            object_pairs_hook=_object_without_duplicates,
        )
    except RecursionError:
        raise DecodeError(f"request body nests deeper than {max_depth} levels") from None
    except json.JSONDecodeError as error:
        raise DecodeError(
            f"request body is not valid JSON: {error.msg} (line {error.lineno}, "
            f"column {error.colno})"
        ) from None
    except ValueError:  # the one other refusal: an integer literal with too many digits
        raise DecodeError("request body contains a number that is out of range") from None
    _check_json_limits(value, max_depth)
    if _SURROGATE_ESCAPE.search(text) and _holds_lone_surrogate(value):
        raise DecodeError(
            "request body contains a \\u escape of an unpaired UTF-16 surrogate; "
            "strings must be valid Unicode"
        )
    return value


def _holds_lone_surrogate(value: Any) -> bool:
    """Whether a string or key holds half a surrogate pair (only a \\u escape can put one
    there): protobuf and PostgreSQL cannot carry it."""
    if isinstance(value, str):
        return _LONE_SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_holds_lone_surrogate(k) or _holds_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_lone_surrogate(item) for item in value)
    return False


def _reject_constant(name: str) -> Any:
    raise DecodeError(f"request body contains {name}; only finite numbers are allowed")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise DecodeError(f"request body contains {text}, which is out of range for a number")
    return value


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DecodeError(f"request body has duplicate key {_q(key)}")
        result[key] = value
    return result


def _check_json_limits(value: Any, max_depth: int) -> None:
    """Iteratively enforce the nesting cap and that every integer fits a double."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise DecodeError(f"request body nests deeper than {max_depth} levels")
            children: Iterable[Any] = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, int) and not isinstance(item, bool) and item.bit_length() > 1000:
            raise DecodeError("request body contains a number that is out of range")


@dataclass(frozen=True)
class _FieldRef:
    """A dotted field path resolved against a message descriptor."""

    name: str  # canonical dotted proto name, e.g. "payload.type"
    fields: tuple[FieldDescriptor, ...]

    @property
    def leaf(self) -> FieldDescriptor:
        return self.fields[-1]


class RequestDecoder:
    """Builds one method's request message from an HTTP request.

    Construction validates the binding (body rule and path variables against the request
    message) and raises BindingError, so a bad annotation stops start-up.
    """

    def __init__(
        self,
        descriptor: Descriptor,
        body_rule: str,
        path_fields: Sequence[str],
        max_depth: int = MAX_JSON_DEPTH,
    ) -> None:
        self._descriptor = descriptor
        self._message_class = GetMessageClass(descriptor)
        self._body_rule = body_rule
        self._max_depth = max_depth
        self._body_field: FieldDescriptor | None = None
        if body_rule not in ("", "*"):
            if body_rule not in descriptor.fields_by_name:
                raise BindingError(f"body {_q(body_rule)} is not a field of {descriptor.full_name}")
            self._body_field = descriptor.fields_by_name[body_rule]
        self._path_fields: dict[str, _FieldRef] = {}
        for field_path in path_fields:
            ref = _resolve(descriptor, field_path, json_names=False)
            if ref is None:
                raise BindingError(
                    f"path variable {_q(field_path)} is not a field of {descriptor.full_name}"
                )
            if ref.leaf.is_repeated or not _is_text_settable(ref.leaf):
                raise BindingError(
                    f"path variable {_q(field_path)} must name a singular scalar field"
                )
            if self._body_field is not None and ref.fields[0] == self._body_field:
                raise BindingError(
                    f"path variable {_q(field_path)} lies inside body {_q(body_rule)}"
                )
            self._path_fields[field_path] = ref

    @property
    def has_body(self) -> bool:
        """Whether the rule reads the request body at all."""
        return self._body_rule != ""

    @property
    def body_field(self) -> FieldDescriptor | None:
        """The field a `body: "field"` rule fills; None for `body: "*"` and for no body."""
        return self._body_field

    @property
    def path_fields(self) -> dict[str, FieldDescriptor]:
        """Each path variable's field path and the scalar field it sets."""
        return {name: ref.leaf for name, ref in self._path_fields.items()}

    def query_fields(self) -> dict[str, FieldDescriptor]:
        """Every field path a query string may set, with its leaf field, by the rules
        `decode` enforces: none under `body: "*"`, never a path variable or the body
        field, only text-settable leaves reached through singular plain messages."""
        if self._body_rule == "*":
            return {}
        skip = set(self._path_fields)
        if self._body_field is not None:
            skip.add(self._body_field.name)
        return dict(_text_settable_fields(self._descriptor, "", skip, frozenset()))

    def decode(self, body: bytes, path_vars: Mapping[str, str], query_string: bytes) -> Message:
        """The request message, or DecodeError naming what is wrong."""
        message = self._message_class()
        if self._body_rule == "*":
            value = parse_json(body, self._max_depth)
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise DecodeError(f"request body must be a JSON object, got {_json_kind(value)}")
            _check_message(self._descriptor, value, "")
            _parse_into(value, message)
        elif self._body_field is not None:
            value = parse_json(body, self._max_depth)
            if value is not None:
                _check_field(self._body_field, value, self._body_field.name)
                _parse_into({self._body_field.name: value}, message)
        for field_path, text in path_vars.items():
            ref = self._path_fields[field_path]
            _set_leaf(
                message, ref, [_convert_text(ref.leaf, text, f"path variable {_q(ref.name)}")]
            )
        for ref, texts in self._query_fields(query_string):
            where = f"query parameter {_q(ref.name)}"
            if not ref.leaf.is_repeated and len(texts) > 1:
                raise DecodeError(f"{where} is given {len(texts)} times; it takes one value")
            _set_leaf(message, ref, [_convert_text(ref.leaf, text, where) for text in texts])
        return message

    def _query_fields(self, query_string: bytes) -> list[tuple[_FieldRef, list[str]]]:
        """Group query parameters by the field they name, rejecting any that name none."""
        if not query_string:
            return []
        try:
            pairs = parse_qsl(
                query_string.decode("utf-8"),
                keep_blank_values=True,
                encoding="utf-8",
                errors="strict",
                max_num_fields=MAX_QUERY_PARAMETERS,
            )
        except UnicodeDecodeError:
            raise DecodeError("query string is not valid UTF-8") from None
        except ValueError:
            raise DecodeError(
                f"query string has more than {MAX_QUERY_PARAMETERS} parameters"
            ) from None
        grouped: dict[str, tuple[_FieldRef, list[str]]] = {}
        for key, text in pairs:
            ref = self._query_field(key)
            grouped.setdefault(ref.name, (ref, []))[1].append(text)
        return list(grouped.values())

    def _query_field(self, key: str) -> _FieldRef:
        if self._body_rule == "*":
            raise DecodeError(
                f"unknown query parameter {_q(key)}: this route takes its fields from the JSON body"
            )
        ref = _resolve(self._descriptor, key, json_names=True)
        if ref is None:
            raise DecodeError(f"unknown query parameter {_q(key)}")
        if ref.name in self._path_fields:
            raise DecodeError(f"query parameter {_q(key)} repeats a path variable")
        if self._body_field is not None and ref.fields[0] == self._body_field:
            raise DecodeError(f"query parameter {_q(key)} belongs in the request body")
        if not _is_text_settable(ref.leaf):
            raise DecodeError(f"query parameter {_q(key)} cannot be set from a query string")
        return ref


def _resolve(descriptor: Descriptor, dotted: str, *, json_names: bool) -> _FieldRef | None:
    """Resolve `a.b.c` through singular, non-well-known message fields."""
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = descriptor
    for part in dotted.split("."):
        if current is None or current.full_name.startswith(_WKT_PREFIX):
            return None
        field = current.fields_by_name.get(part)
        if field is None and json_names:
            field = next((f for f in current.fields if f.json_name == part), None)
        if field is None:
            return None
        fields.append(field)
        is_plain_message = field.message_type is not None and not field.is_repeated
        current = field.message_type if is_plain_message else None
    return _FieldRef(name=".".join(f.name for f in fields), fields=tuple(fields))


def _text_settable_fields(
    descriptor: Descriptor, prefix: str, skip: set[str], visiting: frozenset[str]
) -> Iterator[tuple[str, FieldDescriptor]]:
    for field in descriptor.fields:
        name = prefix + field.name
        if name in skip:
            continue
        message_type = field.message_type
        is_plain_message = (
            message_type is not None
            and not field.is_repeated
            and not message_type.full_name.startswith(_WKT_PREFIX)
        )
        if is_plain_message:
            assert message_type is not None
            if message_type.full_name not in visiting:  # a recursive message: stop there
                nested = visiting | {message_type.full_name}
                yield from _text_settable_fields(message_type, f"{name}.", skip, nested)
        elif _is_text_settable(field):
            yield name, field


def _is_text_settable(field: FieldDescriptor) -> bool:
    """Whether one path segment or query value can express the field's value."""
    message_type = field.message_type
    if message_type is None:
        return True
    if message_type.GetOptions().map_entry:
        return False
    return message_type.full_name in _STRING_WKTS or message_type.full_name in _WRAPPERS


def _convert_text(field: FieldDescriptor, text: str, where: str) -> Any:
    """Turn a path or query string into the JSON value ParseDict expects for `field`."""
    message_type = field.message_type
    if message_type is not None:
        if message_type.full_name in _WRAPPERS:
            return _convert_text(message_type.fields_by_name["value"], text, where)
        return text  # Timestamp, Duration, FieldMask: their JSON form is a string
    if field.type == FieldDescriptor.TYPE_BOOL:
        if text in _TRUE_TEXT:
            return True
        if text in _FALSE_TEXT:
            return False
        raise DecodeError(f"{where} must be true or false, got {_q(text)}")
    if field.type in _INT_RANGES:
        if not _INTEGER_TEXT.fullmatch(text):
            raise DecodeError(f"{where} must be an integer, got {_q(text)}")
        return int(text)
    if field.type in _FLOAT_TYPES:
        if not _FLOAT_TEXT.fullmatch(text):
            raise DecodeError(f"{where} must be a finite number, got {_q(text)}")
        value = float(text)
        if not math.isfinite(value):
            raise DecodeError(f"{where} is out of range, got {_q(text)}")
        return value
    return text  # string, bytes (base64) and enum names: ParseDict checks them


def _set_leaf(message: Message, ref: _FieldRef, values: list[Any]) -> None:
    target = message
    for field in ref.fields[:-1]:
        target = getattr(target, field.name)
    leaf = ref.leaf
    value: Any = values if leaf.is_repeated else values[0]
    _parse_into({leaf.name: value}, target, prefix=".".join(f.name for f in ref.fields[:-1]))


def _parse_into(value: dict[str, Any], message: Message, prefix: str = "") -> None:
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise DecodeError(_parse_error_detail(str(error), prefix)) from None


def _parse_error_detail(text: str, prefix: str) -> str:
    """Name the field json_format refused, the way clients spell it, but not its reason:
    that is library text (a codec or base64 error), and the checks above already word every
    mistake we know of."""
    match = _PARSE_ERROR_FIELD.match(text)
    if match is None:
        return "request body has a value that does not fit its field"
    name = f"{prefix}.{match.group(1)}" if prefix else match.group(1)
    return f"field {_q(name)} has a value that does not fit its type"


def _q(text: str) -> str:
    """Quote a name or value for a detail message the way JSON would."""
    return json.dumps(text, ensure_ascii=False)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _check_message(descriptor: Descriptor, value: dict[str, Any], where: str) -> None:
    """Reject unknown, duplicated and wrongly typed fields with a message naming each."""
    seen: dict[str, str] = {}
    for key, item in value.items():
        field = descriptor.fields_by_name.get(key)
        if field is None:
            field = next((f for f in descriptor.fields if f.json_name == key), None)
        if field is None:
            expected = ", ".join(f.name for f in descriptor.fields)
            raise DecodeError(
                f"unknown field {_q(_join(where, key))}; expected one of: {expected}"
                if expected
                else f"unknown field {_q(_join(where, key))}; this message has no fields"
            )
        if field.name in seen:
            raise DecodeError(
                f"field {_q(_join(where, field.name))} is given twice "
                f"(as {_q(seen[field.name])} and {_q(key)})"
            )
        seen[field.name] = key
        _check_field(field, item, _join(where, field.name))


def _check_field(field: FieldDescriptor, value: Any, where: str) -> None:
    if value is None:
        return  # null means "unset" for every field
    message_type = field.message_type
    if message_type is not None and message_type.GetOptions().map_entry:
        if not isinstance(value, dict):
            raise DecodeError(f"field {_q(where)} must be a JSON object, got {_json_kind(value)}")
        key_field = message_type.fields_by_name["key"]
        value_field = message_type.fields_by_name["value"]
        for key, item in value.items():
            item_where = f"{where}[{key}]"
            _check_map_key(key_field, key, item_where)
            if item is None and not _is_value_type(value_field):
                raise DecodeError(f"field {_q(item_where)} must not be null")
            _check_single(value_field, item, item_where)
        return
    if field.is_repeated:
        if not isinstance(value, list):
            raise DecodeError(f"field {_q(where)} must be a JSON array, got {_json_kind(value)}")
        for index, item in enumerate(value):
            item_where = f"{where}[{index}]"
            if item is None and not _is_value_type(field):
                raise DecodeError(f"field {_q(item_where)} must not be null")
            _check_single(field, item, item_where)
        return
    _check_single(field, value, where)


def _is_value_type(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.full_name == (
        f"{_WKT_PREFIX}Value"
    )


def _check_map_key(key_field: FieldDescriptor, key: str, where: str) -> None:
    if key_field.type in _INT_RANGES and not _INTEGER_TEXT.fullmatch(key):
        raise DecodeError(f"field {_q(where)}: map key must be an integer")
    if key_field.type == FieldDescriptor.TYPE_BOOL and key not in ("true", "false"):
        raise DecodeError(f"field {_q(where)}: map key must be true or false")


def _check_single(field: FieldDescriptor, value: Any, where: str) -> None:
    """Check one (non-repeated) value against the field's type."""
    if value is None:
        return
    message_type = field.message_type
    if message_type is None:
        _check_scalar(field, value, where)
        return
    name = message_type.full_name
    if name in _WRAPPERS:
        _check_scalar(message_type.fields_by_name["value"], value, where)
    elif name in _STRING_WKTS:
        _expect(isinstance(value, str), "a string", value, where)
        _check_time_text(name, value, where)
    elif name == f"{_WKT_PREFIX}ListValue":
        _expect(isinstance(value, list), "a JSON array", value, where)
    elif name in (f"{_WKT_PREFIX}Struct", f"{_WKT_PREFIX}Any", f"{_WKT_PREFIX}Empty"):
        _expect(isinstance(value, dict), "a JSON object", value, where)
    elif name.startswith(_WKT_PREFIX):
        return  # Value (any JSON) and anything exotic: ParseDict decides
    else:
        _expect(isinstance(value, dict), "a JSON object", value, where)
        _check_message(message_type, value, where)


def _check_scalar(field: FieldDescriptor, value: Any, where: str) -> None:
    kind = field.type
    if kind == FieldDescriptor.TYPE_BOOL:
        _expect(isinstance(value, bool), "true or false", value, where)
    elif kind in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        _expect(isinstance(value, str), "a string", value, where)
    elif kind == FieldDescriptor.TYPE_ENUM:
        is_enum = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
        _expect(is_enum, "an enum name or number", value, where)
    elif kind in _FLOAT_TYPES:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        _expect(is_number, "a number", value, where)
    elif kind in _INT_RANGES:
        _check_integer(kind, value, where)


def _check_integer(kind: int, value: Any, where: str) -> None:
    if kind in _INT64_TYPES and isinstance(value, str):
        _expect(bool(_INTEGER_TEXT.fullmatch(value)), "an integer", value, where)
        value = int(value)
    is_integer = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer()
    )
    _expect(is_integer, "an integer", value, where)
    low, high = _INT_RANGES[kind]
    if not low <= value <= high:
        shown = f", got {int(value)}" if abs(value) < 10**20 else ""
        raise DecodeError(f"field {_q(where)} must be between {low} and {high}{shown}")


def _check_time_text(name: str, text: str, where: str) -> None:
    """Timestamp and Duration strings, checked here for a message clients can act on."""
    try:
        if name == f"{_WKT_PREFIX}Timestamp":
            timestamp_pb2.Timestamp().FromJsonString(text)
        elif name == f"{_WKT_PREFIX}Duration":
            duration_pb2.Duration().FromJsonString(text)
    except ValueError:
        example = "2024-01-01T12:00:00Z" if name.endswith("Timestamp") else "1.5s"
        raise DecodeError(
            f"field {_q(where)} must be {name.removeprefix(_WKT_PREFIX).lower()} text "
            f"such as {_q(example)}, got {_q(text)}"
        ) from None


def _expect(ok: bool, expected: str, value: Any, where: str) -> None:
    if not ok:
        raise DecodeError(f"field {_q(where)} must be {expected}, got {_json_kind(value)}")


# --------------------------------------------------------------------------- responses


def encode_message(message: Message) -> dict[str, Any]:
    """A message as grpc-gateway renders it with UseProtoNames + EmitUnpopulated.

    Fields come in field-number order; unset message fields and unset `optional`
    scalars are null; integral doubles (Struct numbers included) are integers.
    """
    data = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    filled = _fill_unpopulated(cast(Descriptor, message.DESCRIPTOR), data)
    result: dict[str, Any] = normalise_numbers(filled)
    return result


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, refusing NaN/Infinity (they are not JSON)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def in_real_oneof(field: FieldDescriptor) -> bool:
    """Whether the field is in a real oneof (not proto3 `optional`'s synthetic one):
    such a field is left out of a response while unset."""
    return field.containing_oneof is not None and field.name not in _optional_scalars(
        cast(Descriptor, field.containing_type)
    )


def null_when_unset(field: FieldDescriptor) -> bool:
    """Whether a response shows the field as null while unset: singular message fields and
    proto3 `optional` scalars (as grpc-gateway's EmitUnpopulated); others get a default."""
    if in_real_oneof(field):
        return False
    is_message = field.message_type is not None and not field.is_repeated
    return is_message or field.containing_oneof is not None


@cache
def _optional_scalars(descriptor: Descriptor) -> frozenset[str]:
    """Names of proto3 `optional` fields: their oneof is synthetic, not a real oneof."""
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    return frozenset(field.name for field in proto.field if field.proto3_optional)


def _fill_unpopulated(descriptor: Descriptor, data: dict[str, Any]) -> dict[str, Any]:
    if descriptor.full_name in _JSON_VALUE_WKTS:
        return {key: _sorted_json(data[key]) for key in sorted(data)}
    if descriptor.full_name.startswith(_WKT_PREFIX):
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
    if message_type.GetOptions().map_entry:
        # Sorted keys, as Go's protojson writes maps: output is deterministic.
        key_field = message_type.fields_by_name["key"]
        value_type = message_type.fields_by_name["value"].message_type
        keys = sorted(value, key=int) if key_field.type in _INT_RANGES else sorted(value)
        return {key: _fill_message(value_type, value[key]) for key in keys}
    if field.is_repeated:
        return [_fill_message(message_type, item) for item in value]
    return _fill_message(message_type, value)


def _fill_message(descriptor: Descriptor | None, value: Any) -> Any:
    if descriptor is None:
        return value
    if descriptor.full_name in _JSON_VALUE_WKTS:
        return _sorted_json(value)
    return _fill_unpopulated(descriptor, value) if isinstance(value, dict) else value


def _sorted_json(value: Any) -> Any:
    """Struct/Value contents with object keys sorted, like protojson (Struct is a map)."""
    if isinstance(value, dict):
        return {key: _sorted_json(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted_json(item) for item in value]
    return value
