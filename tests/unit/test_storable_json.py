"""storable_json: a step's result serialised once, refusing what PostgreSQL cannot store."""

import json
from typing import Any

import pytest

from fleetq_server.store.storable import RESULT_MAX_BYTES, RESULT_MAX_VALUES, storable_json


def test_a_result_becomes_compact_json_text_that_reads_back_equal() -> None:
    result = {"n": 2**70, "text": "żółw", "items": [1, 2.5, None, True]}
    text = storable_json(result)
    assert text == '{"n":1180591620717411303424,"text":"żółw","items":[1,2.5,null,true]}'
    assert json.loads(text) == result


@pytest.mark.parametrize(
    "result",
    [float("nan"), {"x": float("inf")}, {"x": "nul\x00byte"}, ["undecodable \udcff byte"]],
    ids=["nan", "infinity", "nul", "lone-surrogate"],
)
def test_a_result_postgresql_cannot_store_is_refused_with_value_error(result: Any) -> None:
    with pytest.raises(ValueError):
        storable_json(result)


def test_a_result_json_cannot_represent_is_refused_with_type_error() -> None:
    with pytest.raises(TypeError):
        storable_json({"x": {1, 2}})


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        pytest.param([0] * (RESULT_MAX_VALUES + 1), "JSON values", id="values"),
        pytest.param({"deep": [[0, 0]] * (RESULT_MAX_VALUES // 3 + 1)}, "JSON values", id="nested"),
        pytest.param("x" * (RESULT_MAX_BYTES + 1), "bytes", id="ascii-bytes"),
        pytest.param("ż" * (RESULT_MAX_BYTES // 2), "bytes", id="utf8-bytes"),
    ],
)
def test_a_result_too_large_for_a_status_answer_is_refused(result: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        storable_json(result)


def test_a_result_at_the_limits_is_stored() -> None:
    values = [0] * (RESULT_MAX_VALUES - 1)  # the list itself is one value
    assert json.loads(storable_json(values)) == values
    text = "x" * (RESULT_MAX_BYTES - 2)  # the quotes are the other two bytes
    assert json.loads(storable_json(text)) == text
