"""Free-form JSON keeps integers integers through Struct."""

import enum
import json

import pytest
from google.protobuf import struct_pb2

from fleetq_common.json_values import (
    TooManyValues,
    ValueBudget,
    dict_to_struct,
    fill_struct,
    struct_to_dict,
    value_to_python,
)
from fleetq_server.gateway.response_encoding import normalise_numbers


def test_integers_survive_a_struct_round_trip() -> None:
    data = {"n": 5, "f": 2.5, "nested": {"list": [1, 2.25, {"deep": 7}]}, "t": True, "z": None}
    assert struct_to_dict(dict_to_struct(data)) == data
    assert isinstance(struct_to_dict(dict_to_struct(data))["n"], int)


class _Size(enum.IntEnum):
    LARGE = 3


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"n": 5, "f": 2.5, "s": "ü€", "t": True, "z": None, "size": _Size.LARGE},
        {"empty": {}, "none": [], "nested": {"list": [1, {"deep": [None, {}]}, []]}},
        {"tuple": (1, "a"), "struct": dict_to_struct({"x": 1})},
    ],
)
def test_fill_struct_writes_what_struct_update_writes(data: dict[str, object]) -> None:
    # Its dispatch on exact types must not change a byte of the message a client sends.
    expected = struct_pb2.Struct()
    expected.update(data)
    filled = struct_pb2.Struct()
    fill_struct(filled, data)
    assert filled.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )
    assert filled == expected


def test_huge_integral_floats_stay_floats() -> None:
    assert isinstance(normalise_numbers(2.0**60), float)
    assert normalise_numbers(-3.0) == -3 and isinstance(normalise_numbers(-3.0), int)


def test_booleans_are_not_numbers() -> None:
    assert normalise_numbers(True) is True


def _values_in(value: object) -> int:
    """JSON values counted the plain way: this one and every one inside it."""
    if isinstance(value, dict):
        return 1 + sum(_values_in(item) for item in value.values())
    if isinstance(value, list):
        return 1 + sum(_values_in(item) for item in value)
    return 1


def test_the_value_budget_counts_every_container_and_scalar_once() -> None:
    data = {"a": [1, [2, {}], []], "b": {"c": None, "d": {"e": "x"}}, "f": True}
    count = _values_in(data)
    struct = dict_to_struct(data)
    assert struct_to_dict(struct, ValueBudget(count)) == data
    with pytest.raises(TooManyValues):
        struct_to_dict(struct, ValueBudget(count - 1))


def test_a_value_spends_the_budget_like_the_struct_holding_it() -> None:
    data = {"k": [[1, 2], {"x": [3]}]}
    value = dict_to_struct(data).fields["k"]
    count = _values_in(data["k"])
    assert value_to_python(value, ValueBudget(count)) == data["k"]
    with pytest.raises(TooManyValues):
        value_to_python(value, ValueBudget(count - 1))


@pytest.mark.parametrize(
    "text",
    ['{"a":[1,[2,{}],[]],"b":{"c":null,"d":{"e":"x"}},"f":true}', "[0,0,0,0]", "[[[[]]]]", "0"],
)
def test_parsed_json_spends_the_budget_exactly_whatever_its_length(text: str) -> None:
    value = json.loads(text)
    count = _values_in(value)
    assert count <= (len(text) + 1) // 2  # the bound the budget relies on

    exact = ValueBudget(count)
    exact.spend_parsed(value, len(text))
    padded = ValueBudget(count)  # whitespace lengthens the text, not the count
    padded.spend_parsed(value, len(text) * 3)
    with pytest.raises(TooManyValues):
        ValueBudget(count - 1).spend_parsed(value, len(text))


def test_parsed_values_are_counted_together_once_their_bounds_could_pass_the_budget() -> None:
    budget = ValueBudget(10)
    budget.spend(3)  # a Struct's values, counted as they were converted
    small = {"n": 1}  # 2 values, a text of 7 characters: bound 4
    budget.spend_parsed(small, 7)
    assert budget.remaining == 7  # held back: 4 <= 7
    budget.spend_parsed(small, 7)  # bounds 8 > 7: both counted exactly
    assert budget.remaining == 3
    budget.spend_parsed(small, 7)  # 4 > 3: counted at once, and its 2 values fit
    assert budget.remaining == 1
    with pytest.raises(TooManyValues):
        budget.spend_parsed(small, 7)
