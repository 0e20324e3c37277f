"""Request decoding and response encoding against the real FleetQ messages."""

import json
import re
from typing import Any

import pytest
from fleetq.v1 import fleetq_pb2 as pb
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from fleetq_common.json_values import dict_to_struct, python_to_value
from fleetq_server.gateway.json_parse import MAX_JSON_DEPTH, DecodeError, parse_json
from fleetq_server.gateway.request_binding import BindingError, RequestDecoder
from fleetq_server.gateway.response_encoding import (
    _fill_unpopulated,
    dumps,
    encode_message,
    normalise_numbers,
)

SUBMIT = RequestDecoder(pb.SubmitStepRequest.DESCRIPTOR, "*", ())
STATUS = RequestDecoder(pb.GetStepStatusRequest.DESCRIPTOR, "", ("step_id",))
# Bindings the proto does not declare but the codec must support (query strings of any type).
RECOVERY_BY_QUERY = RequestDecoder(pb.RunRecoveryRequest.DESCRIPTOR, "", ())
SUMMARY_BY_QUERY = RequestDecoder(pb.RecoverySummary.DESCRIPTOR, "", ())
STATUS_RESPONSE_BY_QUERY = RequestDecoder(pb.GetStepStatusResponse.DESCRIPTOR, "", ())


def submit(body: Any) -> pb.SubmitStepRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    message = SUBMIT.decode(raw, {}, b"")
    assert isinstance(message, pb.SubmitStepRequest)
    return message


def submit_error(body: Any) -> str:
    with pytest.raises(DecodeError) as caught:
        submit(body)
    return caught.value.detail


def nested_object(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


# ------------------------------------------------------------------------- request body


def test_whole_body_becomes_the_request_message() -> None:
    message = submit(
        {
            "type": "hello_world",
            "args": {"message": "hi", "n": 5},
            "metadata": {"user": "alice"},
            "priority": 5,
            "max_retries": 2,
            "idempotency_key": "k1",
        }
    )

    assert message.type == "hello_world"
    assert dict(message.args) == {"message": "hi", "n": 5}
    assert message.metadata["user"] == "alice"
    assert message.priority == 5
    assert message.HasField("max_retries") and message.max_retries == 2
    assert message.idempotency_key == "k1"


@pytest.mark.parametrize("body", [b"", b"  \n\t"])
def test_empty_body_counts_as_an_empty_object(body: bytes) -> None:
    message = submit(body)

    assert message == pb.SubmitStepRequest()
    assert not message.HasField("args")


def test_null_leaves_an_optional_field_unset() -> None:
    message = submit({"type": "t", "max_retries": None, "args": None})

    assert not message.HasField("max_retries")
    assert not message.HasField("args")


def test_camel_case_json_names_are_accepted_like_protojson() -> None:
    assert submit({"maxRetries": 7}).max_retries == 7


def test_the_same_field_under_both_names_is_rejected() -> None:
    detail = submit_error({"max_retries": 1, "maxRetries": 2})

    assert "max_retries" in detail and "twice" in detail


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"type": "x",', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got an array"),
        (b'"text"', "must be a JSON object, got a string"),
        (b"null", None),  # null body: same as empty
        ({"foo": 1}, 'unknown field "foo"'),
        ({"args": {"a": 1}, "payload": {}}, 'unknown field "payload"'),
        ({"args": "x"}, 'field "args" must be a JSON object, got a string'),
        ({"args": [1]}, 'field "args" must be a JSON object, got an array'),
        ({"metadata": 3}, 'field "metadata" must be a JSON object, got an integer'),
        ({"priority": "5"}, 'field "priority" must be an integer, got a string'),
        ({"priority": "high"}, 'field "priority" must be an integer, got a string'),
        ({"priority": 1.5}, 'field "priority" must be an integer, got a number'),
        ({"priority": True}, 'field "priority" must be an integer, got a boolean'),
        ({"priority": 2**31}, 'field "priority" must be between -2147483648 and 2147483647'),
        ({"priority": 1e300}, "and 2147483647"),
        ({"max_retries": False}, 'field "max_retries" must be an integer, got a boolean'),
        ({"type": 5}, 'field "type" must be a string, got an integer'),
        ({"idempotency_key": ["k"]}, 'field "idempotency_key" must be a string, got an array'),
    ],
)
def test_bad_bodies_are_rejected_with_a_detail_naming_the_problem(
    body: Any, expected: str | None
) -> None:
    if expected is None:
        assert submit(body) == pb.SubmitStepRequest()
        return
    assert expected in submit_error(body)


def test_integral_float_is_accepted_for_an_integer_field() -> None:
    assert submit({"priority": 3.0}).priority == 3


def test_non_utf8_body_is_rejected() -> None:
    assert "not valid UTF-8" in submit_error(b'{"type": "\xff"}')


@pytest.mark.parametrize(
    "raw",
    [b'{"args": {"x": NaN}}', b'{"args": {"x": Infinity}}', b'{"args": {"x": -Infinity}}'],
)
def test_non_finite_constants_are_rejected(raw: bytes) -> None:
    assert "only finite numbers" in submit_error(raw)


def test_numbers_that_overflow_a_double_are_rejected() -> None:
    assert "out of range" in submit_error(b'{"args": {"x": 1e400}}')
    assert "out of range" in submit_error(b'{"args": {"x": 1' + b"0" * 400 + b"}}")


def test_duplicate_keys_are_rejected_even_inside_args() -> None:
    assert 'duplicate key "x"' in submit_error(b'{"args": {"x": 1, "x": 2}}')


def test_nesting_up_to_the_cap_is_accepted() -> None:
    # The body object is level 1, so args may hold MAX_JSON_DEPTH - 1 levels.
    message = submit({"args": nested_object(MAX_JSON_DEPTH - 1)})

    assert message.HasField("args")


def test_nesting_beyond_the_cap_is_rejected() -> None:
    detail = submit_error({"args": nested_object(MAX_JSON_DEPTH)})

    assert f"deeper than {MAX_JSON_DEPTH} levels" in detail


def test_pathologically_deep_nesting_is_rejected_without_recursion_errors() -> None:
    raw = b'{"args": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"

    assert "deeper than" in submit_error(raw)


def test_wrong_types_inside_nested_messages_name_the_full_path() -> None:
    decoder = RequestDecoder(pb.GetLeaderResponse.DESCRIPTOR, "*", ())

    with pytest.raises(DecodeError) as caught:
        decoder.decode(b'{"election_details": {"eligible_pods": [{"is_leader": "yes"}]}}', {}, b"")

    assert 'field "election_details.eligible_pods[0].is_leader" must be true or false' in (
        caught.value.detail
    )


def test_null_inside_a_repeated_field_is_rejected() -> None:
    decoder = RequestDecoder(pb.RecoverySummary.DESCRIPTOR, "*", ())

    with pytest.raises(DecodeError, match="must not be null"):
        decoder.decode(b'{"dead_pods": ["a", null]}', {}, b"")


def test_map_keys_are_checked_against_the_key_type() -> None:
    decoder = RequestDecoder(pb.GetQueueStatsResponse.DESCRIPTOR, "*", ())

    message = decoder.decode(b'{"queue_depth_by_priority": {"5": 2}}', {}, b"")
    assert dict(message.queue_depth_by_priority) == {5: 2}  # type: ignore[attr-defined]
    with pytest.raises(DecodeError, match="map key must be an integer"):
        decoder.decode(b'{"queue_depth_by_priority": {"high": 2}}', {}, b"")


@pytest.mark.parametrize("text", ["yesterday", "", "2024-01-01T12:00:00"])
def test_bad_timestamp_text_is_reported_for_its_field(text: str) -> None:
    decoder = RequestDecoder(pb.EligiblePod.DESCRIPTOR, "*", ())

    with pytest.raises(DecodeError) as caught:
        decoder.decode(json.dumps({"birth_ts": text}).encode(), {}, b"")

    assert caught.value.detail.startswith('field "birth_ts" must be timestamp text such as')


def test_timestamp_text_is_accepted_with_any_offset() -> None:
    decoder = RequestDecoder(pb.EligiblePod.DESCRIPTOR, "*", ())

    message = decoder.decode(b'{"birth_ts": "2024-01-01T13:00:00+01:00"}', {}, b"")

    assert message.birth_ts.seconds == 1704110400  # type: ignore[attr-defined]


def test_query_parameters_are_refused_when_the_whole_body_is_the_message() -> None:
    with pytest.raises(DecodeError, match='unknown query parameter "priority"'):
        SUBMIT.decode(b"{}", {}, b"priority=1")


def test_parse_json_returns_none_for_an_empty_body() -> None:
    assert parse_json(b"") is None
    assert parse_json(b'{"a": [1, 2.5]}') == {"a": [1, 2.5]}


# ------------------------------------------------------------- path and query parameters


def test_path_variable_lands_in_its_field() -> None:
    message = STATUS.decode(b"", {"step_id": "step_1"}, b"")

    assert message == pb.GetStepStatusRequest(step_id="step_1")


def test_unknown_query_parameter_is_rejected() -> None:
    with pytest.raises(DecodeError, match='unknown query parameter "verbose"'):
        STATUS.decode(b"", {"step_id": "s"}, b"verbose=1")


def test_query_parameter_may_not_repeat_a_path_variable() -> None:
    with pytest.raises(DecodeError, match="repeats a path variable"):
        STATUS.decode(b"", {"step_id": "s"}, b"step_id=t")


CANCEL = RequestDecoder(pb.CancelStepRequest.DESCRIPTOR, "*", ("step_id",))


@pytest.mark.parametrize("body", [b"", b"{}", b'{"step_id": "step_1"}', b'{"stepId": "step_1"}'])
def test_a_whole_message_body_may_leave_out_or_repeat_a_path_variable(body: bytes) -> None:
    message = CANCEL.decode(body, {"step_id": "step_1"}, b"")

    assert message == pb.CancelStepRequest(step_id="step_1")


@pytest.mark.parametrize("body", [b'{"step_id": "step_2"}', b'{"stepId": "x' + b"y" * 200 + b'"}'])
def test_a_whole_message_body_contradicting_a_path_variable_is_refused(body: bytes) -> None:
    with pytest.raises(DecodeError, match='"step_id" is given in the path and, differently'):
        CANCEL.decode(body, {"step_id": "step_1"}, b"")


def test_query_scalars_are_converted_to_the_field_type() -> None:
    message = SUMMARY_BY_QUERY.decode(
        b"", {}, b"cycle_id=c%201&dead_pods_found=3&dead_pods=a&dead_pods=b&durationMs=-4"
    )

    assert message == pb.RecoverySummary(
        cycle_id="c 1", dead_pods_found=3, dead_pods=["a", "b"], duration_ms=-4
    )


@pytest.mark.parametrize(
    ("query", "force", "dry_run"),
    [(b"force=true&dry_run=false", True, False), (b"force=0&dry_run=1", False, True)],
)
def test_query_booleans_accept_the_usual_spellings(
    query: bytes, force: bool, dry_run: bool
) -> None:
    message = RECOVERY_BY_QUERY.decode(b"", {}, query)

    assert message == pb.RunRecoveryRequest(force=force, dry_run=dry_run)


@pytest.mark.parametrize(
    ("decoder", "query", "expected"),
    [
        (RECOVERY_BY_QUERY, b"force=yes", 'query parameter "force" must be true or false'),
        (SUMMARY_BY_QUERY, b"dead_pods_found=3x", '"dead_pods_found" must be an integer'),
        (SUMMARY_BY_QUERY, b"dead_pods_found=1_0", '"dead_pods_found" must be an integer'),
        (SUMMARY_BY_QUERY, b"dead_pods_found=99999999999", 'field "dead_pods_found"'),
        (SUMMARY_BY_QUERY, b"cycle_id=a&cycle_id=b", "given 2 times"),
        (SUMMARY_BY_QUERY, b"cycle_id=%FF", "not valid UTF-8"),
        (STATUS_RESPONSE_BY_QUERY, b"payload.args=x", "cannot be set from a query string"),
        (STATUS_RESPONSE_BY_QUERY, b"payload.nope=x", 'unknown query parameter "payload.nope"'),
    ],
)
def test_bad_query_values_are_rejected(
    decoder: RequestDecoder, query: bytes, expected: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        decoder.decode(b"", {}, query)

    assert expected in caught.value.detail


def test_query_reaches_nested_fields_and_timestamps() -> None:
    message = STATUS_RESPONSE_BY_QUERY.decode(
        b"", {}, b"payload.type=t&created_ts=2024-01-01T12:00:00Z&claimed_by=p"
    )

    assert message.payload.type == "t"  # type: ignore[attr-defined]
    assert message.created_ts.seconds == 1704110400  # type: ignore[attr-defined]
    assert message.claimed_by == "p"  # type: ignore[attr-defined]


def test_named_body_field_takes_the_body_and_the_query_the_rest() -> None:
    decoder = RequestDecoder(pb.SubmitStepRequest.DESCRIPTOR, "args", ())

    message = decoder.decode(b'{"n": 5}', {}, b"type=t&priority=2")

    assert message == pb.SubmitStepRequest(type="t", priority=2, args=dict_to_struct({"n": 5}))
    with pytest.raises(DecodeError, match="belongs in the request body"):
        decoder.decode(b"{}", {}, b"args=x")
    with pytest.raises(DecodeError, match='field "args" must be a JSON object'):
        decoder.decode(b"[1]", {}, b"")


@pytest.mark.parametrize(
    ("descriptor", "body", "path_fields", "expected"),
    [
        (pb.GetStepStatusRequest.DESCRIPTOR, "", ("nope",), "not a field"),
        (pb.GetStepStatusResponse.DESCRIPTOR, "", ("payload",), "singular scalar"),
        (pb.GetStepStatusResponse.DESCRIPTOR, "", ("payload.args",), "singular scalar"),
        (pb.RecoverySummary.DESCRIPTOR, "", ("dead_pods",), "singular scalar"),
        (pb.SubmitStepRequest.DESCRIPTOR, "nope", (), "not a field"),
        (pb.GetStepStatusResponse.DESCRIPTOR, "payload", ("payload.type",), "inside body"),
    ],
)
def test_unservable_bindings_are_rejected_at_startup(
    descriptor: Any, body: str, path_fields: tuple[str, ...], expected: str
) -> None:
    with pytest.raises(BindingError, match=expected):
        RequestDecoder(descriptor, body, path_fields)


# ---------------------------------------------------------------------------- responses


def test_every_field_is_present_with_nulls_for_unset_presence_fields() -> None:
    encoded = encode_message(pb.GetStepStatusResponse(step_id="s"))

    assert encoded == {
        "step_id": "s",
        "status": "",
        "claimed_by": None,
        "last_update_ts": None,
        "retry_count": 0,
        "priority": 0,
        "created_ts": None,
        "max_retries": 0,
        "payload": None,
        "result": None,
        "error": None,
        "run_at": None,
        "attempts": [],
        "cancel_requested": False,
    }
    assert list(encoded) == [field.name for field in pb.GetStepStatusResponse.DESCRIPTOR.fields]


def _filled(message_class: Any) -> Message:
    """An instance with every singular string, bool and 32-bit integer field set."""
    message = message_class()
    for field in message.DESCRIPTOR.fields:
        if field.is_repeated or field.message_type is not None:
            continue
        value = {FieldDescriptor.TYPE_STRING: "x", FieldDescriptor.TYPE_BOOL: True}
        setattr(message, field.name, value.get(field.type, 7) if field.enum_type is None else 1)
    return message


@pytest.mark.parametrize("name", sorted(pb.DESCRIPTOR.message_types_by_name))
def test_every_message_encodes_as_json_format_renders_it_where_no_filling_is_due(name: str) -> None:
    message_class = getattr(pb, name)
    for message in (message_class(), _filled(message_class)):
        reference = json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        encoded = encode_message(message)
        # Filling and number normalising change only nulls and integral doubles.
        for key, value in reference.items():
            if not isinstance(value, dict | list | float):
                assert encoded[key] == value, (name, key)
        assert set(reference) <= set(encoded)


def test_set_optional_scalar_is_emitted_even_when_empty() -> None:
    assert encode_message(pb.GetLeaderResponse(current_leader=""))["current_leader"] == ""
    assert encode_message(pb.GetLeaderResponse())["current_leader"] is None


def test_timestamps_are_rfc3339_utc_with_z() -> None:
    created = timestamp_pb2.Timestamp(seconds=1704110400)
    updated = timestamp_pb2.Timestamp(seconds=1704110730, nanos=123456000)

    encoded = encode_message(pb.GetStepStatusResponse(created_ts=created, last_update_ts=updated))

    assert encoded["created_ts"] == "2024-01-01T12:00:00Z"
    assert encoded["last_update_ts"] == "2024-01-01T12:05:30.123456Z"


def test_struct_numbers_keep_their_integer_or_fractional_form() -> None:
    payload = pb.StepPayload(
        type="t", args=dict_to_struct({"n": 5, "x": 2.5, "deep": {"list": [1, 2.25]}})
    )

    encoded = encode_message(pb.GetStepStatusResponse(payload=payload))
    args = encoded["payload"]["args"]

    assert args == {"n": 5, "x": 2.5, "deep": {"list": [1, 2.25]}}
    assert isinstance(args["n"], int) and isinstance(args["deep"]["list"][0], int)
    assert dumps(args) == b'{"deep":{"list":[1,2.25]},"n":5,"x":2.5}'


def test_nested_messages_get_their_unset_fields_as_null() -> None:
    encoded = encode_message(pb.GetStepStatusResponse(payload=pb.StepPayload(type="t")))

    assert encoded["payload"] == {"type": "t", "args": None, "metadata": None}


def test_struct_contents_are_not_filled_with_nulls() -> None:
    payload = pb.StepPayload(args=struct_pb2.Struct(), metadata=dict_to_struct({"k": None}))

    encoded = encode_message(payload)

    assert encoded == {"type": "", "args": {}, "metadata": {"k": None}}


def test_repeated_messages_get_their_unset_fields_as_null() -> None:
    leader = pb.GetLeaderResponse(
        election_details=pb.ElectionDetails(eligible_pods=[pb.EligiblePod(pod_id="p")])
    )

    encoded = encode_message(leader)

    assert encoded["election_details"]["eligible_pods"] == [
        {"pod_id": "p", "birth_ts": None, "last_heartbeat_ts": None, "is_leader": False}
    ]
    assert encoded["leader_birth_ts"] is None and encoded["current_leader"] is None


def test_maps_render_as_objects_with_string_keys_and_filled_message_values() -> None:
    stats = pb.GetQueueStatsResponse(
        queue_depth_by_priority={0: 15, 5: 2},
        pod_capacity={"p": pb.PodCapacity(current=3)},
    )

    encoded = encode_message(stats)

    assert encoded["queue_depth_by_priority"] == {"0": 15, "5": 2}
    assert encoded["pod_capacity"] == {"p": {"current": 3, "max": 0}}
    assert encoded["steps_by_type"] == {}


def test_doubles_print_like_protojson() -> None:
    assert encode_message(pb.GetHealthResponse(uptime_seconds=3600.0))["uptime_seconds"] == 3600
    assert encode_message(pb.GetHealthResponse(uptime_seconds=3600.5))["uptime_seconds"] == 3600.5


def test_value_results_render_as_plain_json() -> None:
    with_list = pb.GetStepStatusResponse(result=python_to_value([1, 2.5, "x", None]))
    with_null = pb.GetStepStatusResponse(result=python_to_value(None))

    assert encode_message(with_list)["result"] == [1, 2.5, "x", None]
    assert encode_message(with_null)["result"] is None


def test_dumps_is_compact_utf8() -> None:
    raw = dumps({"a": "café", "b": [1, 2]})

    assert raw == '{"a":"café","b":[1,2]}'.encode()
    assert re.search(rb"\s", raw) is None


def test_map_and_struct_keys_are_sorted_for_deterministic_output() -> None:
    stats = pb.GetQueueStatsResponse(
        queue_depth_by_priority={10: 1, 2: 1, -1: 1}, steps_by_type={"b": 1, "a": 2}
    )
    payload = pb.StepPayload(args=dict_to_struct({"z": 1, "a": {"y": 1, "b": 2}}))

    assert list(encode_message(stats)["queue_depth_by_priority"]) == ["-1", "2", "10"]
    assert list(encode_message(stats)["steps_by_type"]) == ["a", "b"]
    assert dumps(encode_message(payload)["args"]) == b'{"a":{"b":2,"y":1},"z":1}'


def _with_items(message_class: type[Message]) -> Message:
    """_filled, plus one _filled item in every repeated message field (not maps)."""
    message = _filled(message_class)
    for field in message.DESCRIPTOR.fields:
        item_type = field.message_type
        if field.is_repeated and item_type is not None and not item_type.GetOptions().map_entry:
            item = getattr(message, field.name).add()
            item.CopyFrom(_filled(type(item)))
    return message


@pytest.mark.parametrize("name", sorted(pb.DESCRIPTOR.message_types_by_name))
def test_every_message_encodes_as_the_filled_json_format_rendering(name: str) -> None:
    message_class = getattr(pb, name)
    for message in (message_class(), _filled(message_class), _with_items(message_class)):
        data = json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        reference = normalise_numbers(_fill_unpopulated(message.DESCRIPTOR, data))
        encoded = encode_message(message)
        assert encoded == reference
        assert list(encoded) == list(reference)  # the same field order, too


def test_a_batch_acknowledgement_renders_refusals_and_acceptances_alike() -> None:
    response = pb.SubmitBatchResponse(created_count=1)
    response.steps.add(step_id="s1", status="pending")
    response.items.add().accepted.step_id = "s1"
    response.items.add().refused.message = "taken"
    assert encode_message(response) == {
        "steps": [{"step_id": "s1", "status": "pending", "message": ""}],
        "created_count": 1,
        "items": [
            {"accepted": {"step_id": "s1", "status": "", "message": ""}},
            {"refused": {"code": "", "message": "taken"}},
        ],
    }
