"""message_fill builds exactly the message json_format.ParseDict builds, refusals included."""

from typing import Any

import pytest
from fleetq.v1 import fleetq_pb2 as pb
from google.protobuf import json_format
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetq_server.gateway.message_fill import fill_message

# JSON values as the gateway's parser hands them over: finite numbers, integers whose bit
# length a double can hold, strings without lone surrogates.
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**1000), max_value=2**1000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
)
JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
OBJECTS = st.dictionaries(st.text(), JSON, max_size=5)


def parsed(message_class: type[Message], value: dict[str, Any]) -> Message:
    message = message_class()
    json_format.ParseDict(value, message)
    return message


def filled(message_class: type[Message], value: dict[str, Any]) -> Message:
    message = message_class()
    fill_message(message, value)
    return message


def same_as_parse_dict(message_class: type[Message], value: dict[str, Any]) -> None:
    expected = parsed(message_class, value)
    actual = filled(message_class, value)
    assert actual == expected
    assert actual.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )


@pytest.mark.parametrize(
    "value",
    [
        {"type": "t", "args": {"n": 1, "s": "abc"}, "metadata": {"k": "v"}},
        {"type": "t", "args": {}, "metadata": {}},
        {"args": {"list": [1, [2, None, {"x": True}], []], "null": None, "empty": {}}},
        {"args": {"big": 2**1000 - 1, "neg": -(2**70), "f": 1.5e300, "zero": -0.0}},
        {"priority": -1000, "max_retries": 0, "idempotency_key": "", "delay_seconds": 0},
        {"pending_expiry_seconds": 7, "delay_seconds": 1.25, "run_at": "2024-01-01T00:00:00Z"},
        {"maxRetries": 3, "idempotencyKey": "k", "pendingExpirySeconds": 2.5},
        {"priority": 3.0, "max_retries": None, "metadata": None},
    ],
)
def test_a_submit_is_built_exactly_as_parse_dict_builds_it(value: dict[str, Any]) -> None:
    same_as_parse_dict(pb.SubmitStepRequest, value)


def test_a_batch_fills_each_step_as_parse_dict_does() -> None:
    steps = [
        {"type": "a", "args": {"x": [1, 2.5]}},
        {"type": "b", "args": {}, "run_at": "2030-01-01T00:00:00Z", "maxRetries": 1},
    ]
    same_as_parse_dict(pb.SubmitBatchRequest, {"steps": steps, "independent": True})


def test_a_repeated_field_takes_only_the_arrays_items() -> None:
    message = pb.SubmitBatchRequest()
    message.steps.add(type="stale")
    fill_message(message, {"steps": [{"type": "fresh"}]})
    assert [step.type for step in message.steps] == ["fresh"]


@pytest.mark.parametrize(
    ("message_class", "value", "field"),
    [
        (pb.SubmitStepRequest, {"priority": 2**40}, "priority"),
        (pb.SubmitStepRequest, {"priority": 1.5}, "priority"),
        (pb.SubmitStepRequest, {"run_at": "yesterday"}, "run_at"),
        (pb.SubmitBatchRequest, {"steps": [{"run_at": "never"}]}, "steps"),
        (pb.SubmitBatchRequest, {"steps": [{"priority": 2**40}]}, "steps"),
    ],
)
def test_refusals_name_the_field_parse_dict_names(
    message_class: type[Message], value: dict[str, Any], field: str
) -> None:
    with pytest.raises(json_format.ParseError) as expected:
        parsed(message_class, value)
    with pytest.raises(json_format.ParseError) as actual:
        filled(message_class, value)
    prefix = f"Failed to parse {field} field: "
    assert str(expected.value).startswith(prefix)
    assert str(actual.value).startswith(prefix)


@settings(max_examples=200, deadline=None)
@given(args=OBJECTS, metadata=OBJECTS)
def test_any_json_args_and_metadata_become_the_same_structs(
    args: dict[str, Any], metadata: dict[str, Any]
) -> None:
    same_as_parse_dict(pb.SubmitStepRequest, {"args": args, "metadata": metadata})
