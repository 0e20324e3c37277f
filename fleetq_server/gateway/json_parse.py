"""Strict JSON parsing of request bodies, with the gateway's limits.

Everything a client can get wrong is raised as `DecodeError`, whose `detail` is safe to
show and names the problem in our words (never a Python exception text).
"""

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from fleetq_server.gateway.json_count import count_values, structure

# Deepest JSON nesting accepted in a request body (the top-level object is level 1).
# Each JSON level inside a google.protobuf.Struct costs three protobuf message levels, and
# gRPC's binary decoder stops at 100: a cap of 32 keeps every body the REST side accepts
# also sendable over gRPC, and also readable back inside a larger response message.
MAX_JSON_DEPTH = 32
# A body can only hold a surrogate through a \uD800-\uDFFF escape: look for one before
# walking the parsed value.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Every digit as 9, so that substring searches (C, far quicker than a regex) find numbers.
_DIGITS_AS_NINES = bytes.maketrans(b"0123456789", b"9" * 10)
# A run of digits this long may be an integer beyond 64 bits (or 1,000 bits).
_LONG_DIGITS = b"9" * 19
# What _parse_plain answers when its checks cannot vouch for its result.
_UNPROVEN = object()


class DecodeError(Exception):
    """The request cannot become a message; `detail` says why, for the client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def parse_json(body: bytes, max_depth: int = MAX_JSON_DEPTH, max_values: int | None = None) -> Any:
    """Parse a request body strictly: UTF-8, finite numbers, no duplicate keys, capped depth
    and, with `max_values`, at most that many JSON values (counted before parsing).

    An empty (or all-whitespace) body parses as None.
    """
    bare = structure(body)
    if max_values is not None and body and count_values(bare) > max_values:
        raise DecodeError(f"request body holds more than {max_values} JSON values")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("request body is not valid UTF-8") from None
    if not text.strip():
        return None
    value = _parse_plain(text, bare, max_depth)
    if value is _UNPROVEN:
        value = _parse_strict(text, max_depth)
    if _SURROGATE_ESCAPE.search(text) and _holds_lone_surrogate(value):
        raise DecodeError(
            "request body contains a \\u escape of an unpaired UTF-16 surrogate; "
            "strings must be valid Unicode"
        )
    return value


def _parse_plain(text: str, bare: bytes, max_depth: int) -> Any:
    """The body parsed by the C decoder alone, or _UNPROVEN unless cheap checks prove that
    the strict parse would return the same value.

    json.loads without hooks keeps the last of duplicate keys, accepts NaN and turns a huge
    exponent into infinity: so its value is kept only when the body's structure holds no
    NaN or Infinity and no number that could be out of range (the strict parse then keeps
    every number as it is), as many object members were parsed as the structure has colons
    (so no key was repeated), and nothing nests deeper than `max_depth`.
    """
    if _suspect_numbers(bare):
        return _UNPROVEN
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # the strict parse words every refusal
        return _UNPROVEN
    members = members_within(value, max_depth)
    if members is None or members != bare.count(b":"):
        return _UNPROVEN
    return value


def _suspect_numbers(bare: bytes) -> bool:
    """Whether the structure (json_count.structure: strings gone) holds a number the strict
    parse may refuse: NaN or Infinity (the only capitals left), an exponent (1e999 is
    infinity) or a long run of digits."""
    digits = bare.translate(_DIGITS_AS_NINES)
    return (
        b"N" in digits
        or b"I" in digits
        or b"9e" in digits
        or b"9E" in digits
        or _LONG_DIGITS in digits
    )


def members_within(value: Any, max_depth: int) -> int | None:
    """How many object members `value` holds in all; None if it nests deeper than
    `max_depth`. Visits containers only (scalars are skipped by their type)."""
    if type(value) is not dict and type(value) is not list:
        return 0
    members = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return None
        children: Iterable[Any] = item
        if type(item) is dict:
            members += len(item)
            children = item.values()
        for child in children:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return members


def _parse_strict(text: str, max_depth: int) -> Any:
    """The body parsed with every check in Python hooks and walks, each refusal worded."""
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
            raise DecodeError(f"request body has duplicate key {quote(key)}")
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


def quote(text: str) -> str:
    """Quote a name or value for a detail message the way JSON would."""
    return json.dumps(text, ensure_ascii=False)


def json_kind(value: Any) -> str:
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
