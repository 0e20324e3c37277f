"""storable_json: a step's result serialised once, refusing what PostgreSQL cannot store."""

import json
from typing import Any

import pytest

from fleetq_server.store.storable import storable_json


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
