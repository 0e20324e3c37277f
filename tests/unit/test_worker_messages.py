"""The worker RPCs' answers, built in place from leased steps."""

from datetime import UTC, datetime, timedelta

from fleetq.v1 import fleetq_pb2 as pb
from google.protobuf import struct_pb2

from fleetq_common.json_values import struct_to_dict
from fleetq_server.api.workers import claim_answer
from fleetq_server.store.records import LeasedStep

ENDS = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def _leased(n: int, metadata: dict[str, object], ends: datetime = ENDS) -> LeasedStep:
    return LeasedStep(
        f"step_{n}", "t", {"n": n, "deep": {"l": [1, 2.5]}}, metadata, 0, 3, 1, 2, f"k{n}", ends
    )


def test_a_claim_answer_carries_every_field_of_each_step_in_order() -> None:
    steps = [_leased(1, {"m": "x"}), _leased(2, {}, ENDS + timedelta(seconds=1))]

    answer = claim_answer(steps)

    assert [item.step_id for item in answer.steps] == ["step_1", "step_2"]
    first, second = answer.steps
    assert struct_to_dict(first.args) == {"n": 1, "deep": {"l": [1, 2.5]}}
    assert struct_to_dict(first.metadata) == {"m": "x"}
    assert (first.type, first.attempt, first.retry_count, first.max_retries) == ("t", 2, 1, 3)
    assert first.idempotency_key == "k1"
    assert first.lease_expires_at.ToDatetime(tzinfo=UTC) == ENDS
    assert second.lease_expires_at.ToDatetime(tzinfo=UTC) == ENDS + timedelta(seconds=1)


def test_empty_args_and_metadata_are_present_not_unset() -> None:
    step = LeasedStep("step_1", "t", {}, {}, 0, 3, 0, 1, "k", ENDS)

    (item,) = claim_answer([step]).steps

    # REST renders an unset message as null; the contract shows {}.
    assert item.HasField("args") and item.HasField("metadata")
    assert item.args == struct_pb2.Struct()


def test_no_steps_make_an_empty_answer() -> None:
    assert claim_answer([]) == pb.ClaimStepsResponse()
