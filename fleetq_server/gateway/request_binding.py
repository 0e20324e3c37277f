"""Request binding: body bytes, path variables and query parameters become one request
message, following the method's google.api.http rule.

The body is parsed strictly (`json_parse`) and checked against the descriptor
(`body_check`) before it is set into the message (`message_fill`, with
`json_format.ParseDict` for what is not plain assignment); path and query text is converted by
the field's type here. Every refusal is a DecodeError naming the field.
"""

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from fleetq_server.gateway.body_check import check_field, check_message
from fleetq_server.gateway.descriptor_facts import (
    FLOAT_TYPES,
    INT_RANGES,
    INTEGER_TEXT,
    STRING_WKTS,
    WKT_PREFIX,
    WRAPPERS,
    is_map_entry,
)
from fleetq_server.gateway.json_parse import (
    MAX_JSON_DEPTH,
    DecodeError,
    json_kind,
    parse_json,
    quote,
)
from fleetq_server.gateway.message_fill import fill_message

# Query strings with more parameters than this are refused outright.
MAX_QUERY_PARAMETERS = 100
_FLOAT_TEXT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_TRUE_TEXT = frozenset({"true", "True", "TRUE", "t", "T", "1"})
_FALSE_TEXT = frozenset({"false", "False", "FALSE", "f", "F", "0"})
_PARSE_ERROR_FIELD = re.compile(r"^Failed to parse (\w+) field: ")


class BindingError(ValueError):
    """An http rule this gateway cannot honour for its request message; raised at start-up."""


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
                raise BindingError(
                    f"body {quote(body_rule)} is not a field of {descriptor.full_name}"
                )
            self._body_field = descriptor.fields_by_name[body_rule]
        self._path_fields: dict[str, _FieldRef] = {}
        for field_path in path_fields:
            ref = _resolve(descriptor, field_path, json_names=False)
            if ref is None:
                raise BindingError(
                    f"path variable {quote(field_path)} is not a field of {descriptor.full_name}"
                )
            if ref.leaf.is_repeated or not _is_text_settable(ref.leaf):
                raise BindingError(
                    f"path variable {quote(field_path)} must name a singular scalar field"
                )
            if self._body_field is not None and ref.fields[0] == self._body_field:
                raise BindingError(
                    f"path variable {quote(field_path)} lies inside body {quote(body_rule)}"
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

    def decode(
        self,
        body: bytes,
        path_vars: Mapping[str, str],
        query_string: bytes,
        max_values: int | None = None,
    ) -> Message:
        """The request message, or DecodeError naming what is wrong (a body holding more
        than `max_values` JSON values is refused before it is parsed)."""
        message = self._message_class()
        if self._body_rule == "*":
            value = parse_json(body, self._max_depth, max_values)
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise DecodeError(f"request body must be a JSON object, got {json_kind(value)}")
            check_message(self._descriptor, value, "")
            _parse_into(value, message)
        elif self._body_field is not None:
            value = parse_json(body, self._max_depth, max_values)
            if value is not None:
                check_field(self._body_field, value, self._body_field.name)
                _parse_into({self._body_field.name: value}, message)
        for field_path, text in path_vars.items():
            ref = self._path_fields[field_path]
            # The path wins over the body (as in grpc-gateway), but a body that names the
            # same field with another value is a contradiction, refused rather than dropped:
            # its value was never checked, and the client may believe it was used.
            in_body = _set_value(message, ref) if self._body_rule == "*" else None
            _set_leaf(
                message, ref, [_convert_text(ref.leaf, text, f"path variable {quote(ref.name)}")]
            )
            if in_body is not None and in_body != _set_value(message, ref):
                raise DecodeError(
                    f"field {quote(ref.name)} is given in the path and, differently, in the body"
                )
        for ref, texts in self._query_fields(query_string):
            where = f"query parameter {quote(ref.name)}"
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
                f"unknown query parameter {quote(key)}: "
                "this route takes its fields from the JSON body"
            )
        ref = _resolve(self._descriptor, key, json_names=True)
        if ref is None:
            raise DecodeError(f"unknown query parameter {quote(key)}")
        if ref.name in self._path_fields:
            raise DecodeError(f"query parameter {quote(key)} repeats a path variable")
        if self._body_field is not None and ref.fields[0] == self._body_field:
            raise DecodeError(f"query parameter {quote(key)} belongs in the request body")
        if not _is_text_settable(ref.leaf):
            raise DecodeError(f"query parameter {quote(key)} cannot be set from a query string")
        return ref


def _resolve(descriptor: Descriptor, dotted: str, *, json_names: bool) -> _FieldRef | None:
    """Resolve `a.b.c` through singular, non-well-known message fields."""
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = descriptor
    for part in dotted.split("."):
        if current is None or current.full_name.startswith(WKT_PREFIX):
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
            and not message_type.full_name.startswith(WKT_PREFIX)
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
    if is_map_entry(message_type):
        return False
    return message_type.full_name in STRING_WKTS or message_type.full_name in WRAPPERS


def _convert_text(field: FieldDescriptor, text: str, where: str) -> Any:
    """Turn a path or query string into the JSON value ParseDict expects for `field`."""
    message_type = field.message_type
    if message_type is not None:
        if message_type.full_name in WRAPPERS:
            return _convert_text(message_type.fields_by_name["value"], text, where)
        return text  # Timestamp, Duration, FieldMask: their JSON form is a string
    if field.type == FieldDescriptor.TYPE_BOOL:
        if text in _TRUE_TEXT:
            return True
        if text in _FALSE_TEXT:
            return False
        raise DecodeError(f"{where} must be true or false, got {quote(text)}")
    if field.type in INT_RANGES:
        if not INTEGER_TEXT.fullmatch(text):
            raise DecodeError(f"{where} must be an integer, got {quote(text)}")
        return int(text)
    if field.type in FLOAT_TYPES:
        if not _FLOAT_TEXT.fullmatch(text):
            raise DecodeError(f"{where} must be a finite number, got {quote(text)}")
        value = float(text)
        if not math.isfinite(value):
            raise DecodeError(f"{where} is out of range, got {quote(text)}")
        return value
    return text  # string, bytes (base64) and enum names: ParseDict checks them


def _set_value(message: Message, ref: _FieldRef) -> Any:
    """The value `ref` names in `message`, or None when it is unset (or proto3's default)."""
    target = message
    for field in ref.fields[:-1]:
        if not target.HasField(field.name):
            return None
        target = getattr(target, field.name)
    leaf = ref.leaf
    if leaf.message_type is not None or leaf.has_presence:
        return getattr(target, leaf.name) if target.HasField(leaf.name) else None
    value = getattr(target, leaf.name)
    return None if value == leaf.default_value else value


def _set_leaf(message: Message, ref: _FieldRef, values: list[Any]) -> None:
    target = message
    for field in ref.fields[:-1]:
        target = getattr(target, field.name)
    leaf = ref.leaf
    value: Any = values if leaf.is_repeated else values[0]
    _parse_into({leaf.name: value}, target, prefix=".".join(f.name for f in ref.fields[:-1]))


def _parse_into(value: dict[str, Any], message: Message, prefix: str = "") -> None:
    try:
        fill_message(message, value)
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
    return f"field {quote(name)} has a value that does not fit its type"
