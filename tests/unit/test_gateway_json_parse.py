"""parse_json's C-only fast path answers exactly what the strict, hooked parse answers."""

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetq_server.gateway import json_parse
from fleetq_server.gateway.json_parse import DecodeError, parse_json

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=25,
)


def outcome(parse: Any, body: bytes) -> tuple[str, Any]:
    try:
        return ("value", parse(body))
    except DecodeError as error:
        return ("refused", error.detail)


def strict(body: bytes) -> Any:
    """The hooked parse alone: what parse_json answered before it had a fast path."""
    text = body.decode("utf-8")
    return json_parse._parse_strict(text, json_parse.MAX_JSON_DEPTH)


def same_as_strict(body: bytes) -> None:
    fast, slow = outcome(parse_json, body), outcome(strict, body)
    assert fast == slow
    assert repr(fast) == repr(slow)  # 1 and 1.0, 0.0 and -0.0 compare equal, but differ


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":1,"a":2}',
        b'{"a":{"x":1,"x":2},"b":NaN}',
        b'{"n":[NaN]}',
        b'{"n":-Infinity}',
        b'{"n":1e400}',
        b'{"n":1E5}',
        b'{"n":18446744073709551616}',
        b'{"n":-9223372036854775809}',
        b'{"n":' + b"9" * 400 + b"}",
        b'{"s":"\\"a\\":1","s2":"\\\\"}',
        b'{"a\\u0062":1,"ab":2}',
        b'{"k":":::","e":"1e999","N":"NaN"}',
        b'[{"a":1},{"a":1}]',
        b"[" * 32 + b"]" * 32,
        b"[" * 33 + b"]" * 33,
        b"[" * 5000 + b"]" * 5000,
        b'{"x":[1,2,{"y":null,"z":[true,false,-0.0,0.5]}]}',
        b"12",
        b"1e400",
        b'"text"',
        b"\xef\xbb\xbf{}",
        b'{"a":1,}',
    ],
)
def test_hostile_and_plain_bodies_get_the_strict_answer(body: bytes) -> None:
    same_as_strict(body)


def test_duplicate_keys_are_refused_even_when_the_c_parser_accepts_them() -> None:
    with pytest.raises(DecodeError, match='duplicate key "a"'):
        parse_json(b'{"args":{"a":1,"b":{},"a":2}}')


@settings(max_examples=300, deadline=None)
@given(value=JSON, indent=st.sampled_from([None, 1]))
def test_any_json_document_gets_the_strict_answer(value: Any, indent: int | None) -> None:
    same_as_strict(json.dumps(value, indent=indent).encode())


def test_a_body_over_the_value_limit_is_refused_before_it_is_parsed() -> None:
    body = b'{"a":[1,2,3],"b":{"c":"x"},'  # invalid JSON: the count comes first
    with pytest.raises(DecodeError, match="holds more than 6 JSON values"):
        parse_json(body, max_values=6)
    assert parse_json(b'{"a":[1,2,3],"b":{"c":"x"}}', max_values=7) == {
        "a": [1, 2, 3],
        "b": {"c": "x"},
    }
