"""The client sends args and metadata as JSON text only where it says what a Struct would,
and can move it back into Structs for a pod that predates it."""

import dataclasses
import datetime
import math

import orjson
import pytest
from fleetq.v1 import fleetq_pb2 as pb

from fleetq_client import calls
from fleetq_client.json_text import as_structs, as_text
from fleetq_common.json_values import struct_to_dict


def test_plain_objects_go_as_json_text_and_a_batch_carries_no_structs() -> None:
    request = calls.submit_batch(
        [{"type": "t", "args": {"n": 1, "s": "é", "l": [1.5, None, True]}}] * 2
    ).request
    step = request.steps[0]
    assert orjson.loads(step.args_json) == {"n": 1, "s": "é", "l": [1.5, None, True]}
    assert not step.HasField("args") and not step.HasField("metadata")

    single = calls.submit_request("t", {}, metadata={"by": "me"})
    assert (single.args_json, orjson.loads(single.metadata_json)) == ("{}", {"by": "me"})


@dataclasses.dataclass
class _Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [
        {"x": math.nan},  # orjson would write null
        {"x": [1, {"y": -math.inf}]},
        {"big": 2**64},  # beyond orjson's integers; a Struct carries it as a double
        {"at": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)},
        {"p": _Point(1)},
    ],
)
def test_what_json_text_would_change_is_not_written_as_text(value: dict[str, object]) -> None:
    assert as_text(value) is None


def test_a_non_finite_number_goes_in_a_struct_for_the_pod_to_refuse_as_before() -> None:
    request = calls.submit_request("t", {"x": [1, math.inf]})

    assert not request.args_json
    assert math.isinf(request.args.fields["x"].list_value.values[1].number_value)


def test_a_null_that_is_really_null_stays_text() -> None:
    assert as_text({"x": None, "y": [None]}) == '{"x":null,"y":[null]}'


def test_json_text_moves_back_into_structs_for_an_older_pod() -> None:
    batch = calls.submit_batch(
        [{"type": "t", "args": {"n": n}, "metadata": {"m": n}} for n in range(3)]
    ).request

    assert as_structs(batch) is True
    assert [struct_to_dict(step.args) for step in batch.steps] == [{"n": n} for n in range(3)]
    assert [struct_to_dict(step.metadata) for step in batch.steps] == [{"m": n} for n in range(3)]
    assert not any(step.args_json or step.metadata_json for step in batch.steps)
    assert as_structs(batch) is False  # nothing left to move
    assert as_structs(pb.GetStepStatusRequest(step_id="x")) is False
