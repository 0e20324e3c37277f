"""Free-form JSON keeps integers integers through Struct."""

from fleetq_common.json_values import dict_to_struct, struct_to_dict
from fleetq_server.gateway.response_encoding import normalise_numbers


def test_integers_survive_a_struct_round_trip() -> None:
    data = {"n": 5, "f": 2.5, "nested": {"list": [1, 2.25, {"deep": 7}]}, "t": True, "z": None}
    assert struct_to_dict(dict_to_struct(data)) == data
    assert isinstance(struct_to_dict(dict_to_struct(data))["n"], int)


def test_huge_integral_floats_stay_floats() -> None:
    assert isinstance(normalise_numbers(2.0**60), float)
    assert normalise_numbers(-3.0) == -3 and isinstance(normalise_numbers(-3.0), int)


def test_booleans_are_not_numbers() -> None:
    assert normalise_numbers(True) is True
