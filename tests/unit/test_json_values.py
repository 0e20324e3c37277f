"""Free-form JSON keeps integers integers through Struct."""

import enum

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
