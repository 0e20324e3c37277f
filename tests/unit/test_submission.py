"""Submit validation, step ids and idempotency keys."""

import hashlib
import re
import time
import tracemalloc
from dataclasses import replace
from typing import Any

import orjson
import pytest

from fleetq_server.errors import ValidationError
from fleetq_server.submission import (
    SubmitRequest,
    derived_idempotency_key,
    new_step_id,
    new_step_ids,
    prepare_plain_step,
    prepare_step,
)

VALID = SubmitRequest(
    type="hello_world",
    args={"message": "hi"},
    metadata=None,
    priority=0,
    max_retries=None,
    idempotency_key=None,
)


def test_defaults_are_applied() -> None:
    step = prepare_step(VALID)
    assert step.max_retries == 3
    assert step.metadata_json == b"{}"
    assert step.client_key is None
    assert step.idempotency_key == derived_idempotency_key(step.step_id)


def test_a_prepared_step_holds_its_payload_in_bytes_of_its_own_size() -> None:
    # orjson's output keeps the 4 KiB buffer it was written into: a batch of a thousand
    # steps held 4 MB for their small args, and paid for it in malloc.
    requests = [replace(VALID, args={"n": n}) for n in range(200)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        steps = [prepare_step(request) for request in requests]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert steps[7].args_json == b'{"n":7}'
    assert held / len(steps) < 2048  # its record, id, key and JSON: about 400 bytes


# Submits of type, args, metadata and priority alone, valid and not, each invalid in one
# field (and one in two, where the first checked must be the one named).
PLAIN_SUBMITS = [
    VALID,
    replace(VALID, metadata={"b": [1.5, "x"], "a": None}, priority=-7),
    replace(VALID, type=""),
    replace(VALID, type="no spaces"),
    replace(VALID, args=None),
    replace(VALID, args={"id": 2**60}),
    replace(VALID, args={"text": "a\x00b"}),
    replace(VALID, metadata={"key\x00": 1}),
    replace(VALID, priority=10**6),
    replace(VALID, type="", priority=10**6),
]


@pytest.mark.parametrize("request_", PLAIN_SUBMITS)
def test_a_plain_submit_is_prepared_as_every_submit_is(request_: SubmitRequest) -> None:
    """prepare_plain_step, a bulk batch's shortcut, builds the same row as prepare_step,
    or refuses with the same message."""
    step_id = new_step_id()

    def outcome(prepare: Any) -> object:
        try:
            return prepare()
        except ValidationError as exc:
            return str(exc)

    plain = outcome(
        lambda: prepare_plain_step(
            request_.type, request_.args, request_.metadata, request_.priority, step_id
        )
    )
    assert plain == outcome(lambda: prepare_step(request_, step_id))


def test_step_ids_have_the_contract_shape_and_do_not_collide() -> None:
    ids = {new_step_id() for _ in range(5_000)} | set(new_step_ids(5_000))
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"step_\d{14}_[0-9a-f]{16}", step_id) for step_id in ids)


def test_step_ids_ascend_through_a_batch_and_with_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ascending ids go to the right end of PostgreSQL's indexes (submission.py)."""
    clock = iter([1_767_225_600_000_001_000, 1_767_225_600_000_002_000])
    monkeypatch.setattr(time, "time_ns", lambda: next(clock))
    earlier, later = new_step_ids(1000), new_step_ids(1000)
    assert earlier + later == sorted(earlier + later)
    assert len(set(earlier + later)) == 2000


def test_a_batch_of_ids_has_exactly_the_count_asked_for() -> None:
    assert [len(new_step_ids(count)) for count in (1, 2, 1000)] == [1, 2, 1000]


def test_prepare_step_keeps_a_given_id_and_derives_the_key_from_it() -> None:
    step = prepare_step(VALID, "step_20260101000000_00000000000000aa")
    assert step.step_id == "step_20260101000000_00000000000000aa"
    assert step.idempotency_key == derived_idempotency_key(step.step_id)


def test_derived_key_is_deterministic_per_step() -> None:
    assert derived_idempotency_key("step_a") == derived_idempotency_key("step_a")
    assert derived_idempotency_key("step_a") != derived_idempotency_key("step_b")
    assert re.fullmatch(r"idem_[0-9a-f]{8}_[0-9a-f]{8}", derived_idempotency_key("step_a"))


def test_client_key_becomes_the_idempotency_key() -> None:
    step = prepare_step(replace(VALID, idempotency_key="order-42"))
    assert step.idempotency_key == "order-42" and step.client_key == "order-42"


def test_payload_hash_distinguishes_payloads() -> None:
    keyed = replace(VALID, idempotency_key="order-42")
    first = prepare_step(keyed)
    same = prepare_step(keyed)
    other = prepare_step(replace(keyed, args={"message": "bye"}))
    assert first.payload_hash == same.payload_hash != other.payload_hash


def test_a_step_without_a_client_key_has_no_fingerprint() -> None:
    # Nothing can repeat it, so nothing would ever compare one.
    assert prepare_step(VALID).payload_hash == ""


@pytest.mark.parametrize(
    "args",
    [
        {"message": "hi"},
        {"z": 1, "a": {"y": [1, 2.5, None, True], "b": "ü€😀"}},
        {"big": 2**53 - 1, "tiny": 1.5e-7, "text": "1234567890123456 2e5 \\u0000"},
    ],
)
def test_payload_hash_keeps_the_form_stored_fingerprints_were_made_with(
    args: dict[str, Any],
) -> None:
    # Rows written before hold sha256 of this exact document; a repeat must still match.
    request = replace(
        VALID, args=args, metadata={"m": [3]}, priority=-7, max_retries=2, idempotency_key="k"
    )
    document = [request.type, args, {"m": [3]}, -7, 2]
    expected = hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert prepare_step(request).payload_hash == expected


@pytest.mark.parametrize(
    "args",
    [
        {"n": 2**53},
        {"n": -(2**53)},
        {"n": 1e300},
        {"deep": [{"n": 2**70}]},
        {"s": "\ud800"},
        {"k\udc00": 1},
    ],
)
def test_unstorable_payloads_are_refused_whatever_their_json_looks_like(
    args: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError, match=r"^args"):
        prepare_step(replace(VALID, args=args))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": ""}, "type"),
        ({"type": "x" * 129}, "type"),
        ({"type": "bad type!"}, "type"),
        ({"args": None}, "args"),
        ({"priority": 1001}, "priority"),
        ({"priority": -1001}, "priority"),
        ({"max_retries": 101}, "max_retries"),
        ({"max_retries": -1}, "max_retries"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "k\x00"}, "idempotency_key"),
        ({"args": {"deep": [{"s": "a\x00"}]}}, "args"),
        ({"args": {"k\x00": 1}}, "args"),
        ({"metadata": {"m": "\x00"}}, "metadata"),
    ],
)
def test_invalid_field_is_named(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=f"^{field}:"):
        prepare_step(replace(VALID, **change))  # type: ignore[arg-type]


def test_limits_are_inclusive() -> None:
    prepare_step(replace(VALID, type="a" * 128, priority=1000, max_retries=100))
    prepare_step(replace(VALID, type="a.b-c_D9", priority=-1000, max_retries=0))
