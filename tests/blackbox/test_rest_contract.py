"""The REST contract (shared/contract/endpoints.md) against a real pod, through httpx.

One pod serves the module; every test creates the steps it looks at and compares step counts
only before and after its own requests, so no test depends on another's data.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.blackbox.contract import (
    FAST_POD_ENV,
    HEALTH_FIELDS,
    STEP_ID,
    STEP_STATUS_KEYS,
    assert_error,
    assert_integer,
    assert_timestamp,
    submit,
    total_steps,
    wait_for_status,
)
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess

MAX_BODY_BYTES = 1 << 20
# No pod has a handler for this type, so its steps stay pending.
UNHANDLED_TYPE = "blackbox.unhandled"


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env=FAST_POD_ENV)


@pytest.fixture
def pod_id(client: httpx.Client) -> str:
    pod_id: str = client.get("/health").json()["pod_id"]
    return pod_id


# ------------------------------------------------------------------------ success bodies


def test_health_reports_a_healthy_leading_pod(client: httpx.Client) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == HEALTH_FIELDS
    assert isinstance(body["pod_id"], str) and body["pod_id"]
    assert body["status"] == "healthy"
    assert isinstance(body["uptime_seconds"], int | float) and body["uptime_seconds"] >= 0
    assert 0 <= assert_integer(body["current_capacity"]) <= 8
    assert assert_integer(body["max_capacity"]) == 8  # floor(10 * 0.8)
    assert body["is_leader"] is True
    assert isinstance(body["version"], str) and body["version"]


def test_submit_answers_201_with_the_new_step(client: httpx.Client) -> None:
    response = client.post("/submit", json={"type": UNHANDLED_TYPE, "args": {}})

    assert response.status_code == 201
    assert "x-http-code" not in response.headers  # consumed by the gateway
    body = response.json()
    assert set(body) == {"step_id", "status", "message"}
    assert STEP_ID.fullmatch(body["step_id"]), body
    assert body["status"] == "submitted"
    assert body["step_id"] in body["message"]


def test_status_of_a_pending_step_has_every_field_and_the_defaults(client: httpx.Client) -> None:
    args = {"n": 5, "ratio": 0.5, "big": 2**40, "nested": {"list": [1, 2.5, "x", True, None]}}
    step_id = submit(client, {"type": UNHANDLED_TYPE, "args": args})

    response = client.get(f"/status/{step_id}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == STEP_STATUS_KEYS
    assert body["step_id"] == step_id
    assert body["status"] == "pending"
    assert body["claimed_by"] is None
    assert assert_integer(body["retry_count"]) == 0
    assert assert_integer(body["priority"]) == 0
    assert assert_integer(body["max_retries"]) == 3
    created = assert_timestamp(body["created_ts"])
    assert assert_timestamp(body["last_update_ts"]) >= created
    assert body["payload"] == {"type": UNHANDLED_TYPE, "args": args, "metadata": {}}
    assert assert_integer(body["payload"]["args"]["n"]) == 5  # not 5.0
    assert assert_integer(body["payload"]["args"]["big"]) == 2**40
    assert assert_integer(body["payload"]["args"]["nested"]["list"][0]) == 1
    assert body["result"] is None
    assert body["error"] is None


def test_status_returns_metadata_priority_and_max_retries_as_submitted(
    client: httpx.Client,
) -> None:
    metadata = {"user": "alice", "attempt": 2, "tags": ["a", "b"]}
    step_id = submit(
        client,
        {
            "type": UNHANDLED_TYPE,
            "args": {"input_file": "data.csv"},
            "metadata": metadata,
            "priority": -7,
            "max_retries": 0,
        },
    )

    body = client.get(f"/status/{step_id}").json()

    assert body["payload"]["metadata"] == metadata
    assert assert_integer(body["payload"]["metadata"]["attempt"]) == 2
    assert body["priority"] == -7
    assert body["max_retries"] == 0


def test_status_of_a_completed_step_carries_its_result(client: httpx.Client, pod_id: str) -> None:
    step_id = submit(client, {"type": "hello_world", "args": {"message": "black box"}})

    body = wait_for_status(client, step_id, "completed")

    assert set(body) == STEP_STATUS_KEYS
    assert body["result"] == {"greeting": "Hello, black box", "step_id": step_id}
    assert body["error"] is None
    assert body["claimed_by"] in (None, pod_id)
    assert assert_timestamp(body["last_update_ts"]) >= assert_timestamp(body["created_ts"])


def test_status_of_a_running_step_names_the_pod_that_claimed_it(
    client: httpx.Client, pod_id: str
) -> None:
    step_id = submit(client, {"type": "sleep", "args": {"seconds": 2}})

    body = wait_for_status(client, step_id, "claimed")

    assert body["claimed_by"] == pod_id
    assert body["result"] is None and body["error"] is None


def test_status_of_a_failed_step_carries_its_error(client: httpx.Client) -> None:
    step_id = submit(client, {"type": "sleep", "args": {"seconds": "soon"}, "max_retries": 0})

    body = wait_for_status(client, step_id, "failed")

    assert set(body) == STEP_STATUS_KEYS
    assert body["error"] == {"type": "ValueError", "message": "args.seconds must be a number"}
    assert body["result"] is None
    assert body["retry_count"] == 0


def test_idempotency_key_is_deterministic_per_step(client: httpx.Client) -> None:
    first = submit(client, {"type": UNHANDLED_TYPE, "args": {}})
    second = submit(client, {"type": UNHANDLED_TYPE, "args": {}})

    response = client.get(f"/idempotency/{first}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"step_id", "idempotency_key"}
    assert body["step_id"] == first
    key = body["idempotency_key"]
    assert isinstance(key, str) and key
    assert client.get(f"/idempotency/{first}").json()["idempotency_key"] == key
    assert client.get(f"/idempotency/{second}").json()["idempotency_key"] != key


def test_leader_reports_this_pod_as_the_only_eligible_one(
    client: httpx.Client, pod_id: str
) -> None:
    response = client.get("/admin/leader")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "current_leader",
        "leader_birth_ts",
        "active_pods",
        "last_election_check",
        "election_details",
    }
    assert body["current_leader"] == pod_id
    birth = assert_timestamp(body["leader_birth_ts"])
    assert assert_integer(body["active_pods"]) == 1
    assert assert_timestamp(body["last_election_check"]) >= birth
    assert set(body["election_details"]) == {"eligible_pods"}
    [eligible] = body["election_details"]["eligible_pods"]
    assert set(eligible) == {"pod_id", "birth_ts", "last_heartbeat_ts", "is_leader"}
    assert eligible["pod_id"] == pod_id
    assert assert_timestamp(eligible["birth_ts"]) == birth
    assert assert_timestamp(eligible["last_heartbeat_ts"]) >= birth
    assert eligible["is_leader"] is True


def test_queue_counts_steps_by_status_priority_type_and_pod(
    client: httpx.Client, pod_id: str
) -> None:
    step_type = "blackbox.queue-counts"
    for priority in (4, 4, -3):
        submit(client, {"type": step_type, "args": {}, "priority": priority})

    response = client.get("/admin/queue")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "pending_steps",
        "claimed_steps",
        "completed_steps",
        "failed_steps",
        "active_pods",
        "current_leader",
        "queue_depth_by_priority",
        "steps_by_type",
        "pod_capacity",
        "type_limits",  # appended by issue 16: each limited step type's limit and in-flight
        "cancelled_steps",  # appended by issue 14 (CancelStep)
        "workers",  # appended beside the contract's fields (remote workers, issue #15)
    }
    assert body["workers"] == []
    for key in ("pending_steps", "claimed_steps", "completed_steps", "failed_steps"):
        assert assert_integer(body[key]) >= 0
    assert assert_integer(body["pending_steps"]) >= 3
    assert assert_integer(body["active_pods"]) == 1
    assert body["current_leader"] == pod_id
    depth = body["queue_depth_by_priority"]  # JSON object keys: priorities as strings
    assert assert_integer(depth["4"]) >= 2 and assert_integer(depth["-3"]) >= 1
    assert all(assert_integer(count) > 0 for count in depth.values())
    assert assert_integer(body["steps_by_type"][step_type]) == 3
    assert set(body["pod_capacity"]) == {pod_id}
    capacity = body["pod_capacity"][pod_id]
    assert set(capacity) == {"current", "max"}
    assert assert_integer(capacity["max"]) == 8
    assert assert_integer(capacity["current"]) >= 0


RECOVERY_SUMMARY_COUNTS = (
    "dead_pods_found",
    "orphaned_steps_found",
    "steps_requeued",
    "steps_marked_terminal",
    "duration_ms",
)
RECOVERY_SUMMARY_LISTS = ("dead_pods", "requeued_steps", "terminal_steps")


@pytest.mark.parametrize(
    ("request_body", "expected_status"),
    [({"dry_run": True}, "dry_run"), ({"force": True}, "completed")],
)
def test_recovery_on_the_leader_reports_its_summary(
    client: httpx.Client, request_body: dict[str, bool], expected_status: str
) -> None:
    response = client.post("/admin/recovery/run", json=request_body)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"status", "message", "recovery_summary"}
    assert body["status"] == expected_status
    assert isinstance(body["message"], str) and body["message"]
    summary = body["recovery_summary"]
    assert set(summary) == {"cycle_id", *RECOVERY_SUMMARY_COUNTS, *RECOVERY_SUMMARY_LISTS}
    assert isinstance(summary["cycle_id"], str) and summary["cycle_id"]
    for key in RECOVERY_SUMMARY_COUNTS:
        assert assert_integer(summary[key]) >= 0
    for key in RECOVERY_SUMMARY_LISTS:
        assert isinstance(summary[key], list)


def test_recovery_accepts_an_empty_body(client: httpx.Client) -> None:
    response = client.post("/admin/recovery/run")

    assert response.status_code == 200, response.text
    assert response.json()["status"] in ("completed", "skipped")


def test_recovery_on_a_follower_is_forbidden(server_factory: ServerFactory) -> None:
    leader = server_factory(env=FAST_POD_ENV)
    follower = server_factory(env=FAST_POD_ENV)

    response = httpx.post(f"{follower.http_url}/admin/recovery/run", json={"dry_run": True})

    assert_error(response, 403, "permission_denied", "/admin/recovery/run")
    assert httpx.post(f"{leader.http_url}/admin/recovery/run", json={}).status_code == 200


# ---------------------------------------------------------------------- submit validation


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"args": {}}, "type", id="type-missing"),
        pytest.param({"type": "", "args": {}}, "type", id="type-empty"),
        pytest.param({"type": None, "args": {}}, "type", id="type-null"),
        pytest.param({"type": "a" * 129, "args": {}}, "type", id="type-129-characters"),
        pytest.param({"type": "has space", "args": {}}, "type", id="type-space"),
        pytest.param({"type": "slash/type", "args": {}}, "type", id="type-slash"),
        pytest.param({"type": "ok\n", "args": {}}, "type", id="type-final-newline"),
        pytest.param({"type": "caf\u00e9", "args": {}}, "type", id="type-non-ascii"),
        pytest.param({"type": "ok"}, "args", id="args-missing"),
        pytest.param({"type": "ok", "args": None}, "args", id="args-null"),
        pytest.param({"type": "ok", "args": [1, 2]}, "args", id="args-array"),
        pytest.param({"type": "ok", "args": "x=1"}, "args", id="args-string"),
        pytest.param({"type": "ok", "args": 7}, "args", id="args-number"),
        pytest.param(
            {"type": "ok", "args": {}, "metadata": ["a"]}, "metadata", id="metadata-array"
        ),
        pytest.param({"type": "ok", "args": {}, "metadata": "m"}, "metadata", id="metadata-string"),
        pytest.param({"type": "ok", "args": {}, "priority": 1001}, "priority", id="priority-1001"),
        pytest.param({"type": "ok", "args": {}, "priority": -1001}, "priority", id="priority-neg"),
        pytest.param({"type": "ok", "args": {}, "priority": 2**31}, "priority", id="priority-huge"),
        pytest.param(
            {"type": "ok", "args": {}, "max_retries": 101}, "max_retries", id="retries-101"
        ),
        pytest.param(
            {"type": "ok", "args": {}, "max_retries": -1}, "max_retries", id="retries-neg"
        ),
        pytest.param({"type": 5, "args": {}}, "type", id="type-number"),
        pytest.param({"type": "ok", "args": {}, "priority": "5"}, "priority", id="priority-string"),
        pytest.param(
            {"type": "ok", "args": {}, "priority": 1.5}, "priority", id="priority-fraction"
        ),
        pytest.param({"type": "ok", "args": {}, "priority": True}, "priority", id="priority-bool"),
        pytest.param(
            {"type": "ok", "args": {}, "max_retries": [3]}, "max_retries", id="retries-array"
        ),
        pytest.param(
            {"type": "ok", "args": {}, "idempotency_key": 42}, "idempotency_key", id="key-number"
        ),
        pytest.param(
            {"type": "ok", "args": {}, "idempotency_key": ""}, "idempotency_key", id="key-empty"
        ),
        pytest.param(
            {"type": "ok", "args": {}, "idempotency_key": "k" * 256},
            "idempotency_key",
            id="key-256-characters",
        ),
        pytest.param({"type": "ok", "args": {"s": "a\u0000b"}}, "args", id="args-nul-character"),
        pytest.param({"type": "ok", "args": {"a\u0000": 1}}, "args", id="args-nul-in-a-key"),
        pytest.param(
            {"type": "ok", "args": {}, "metadata": {"m": ["\u0000"]}}, "metadata", id="metadata-nul"
        ),
        pytest.param(
            {"type": "ok", "args": {}, "idempotency_key": "k\u0000"},
            "idempotency_key",
            id="key-nul",
        ),
        pytest.param({"type": "ok", "args": {}, "colour": "red"}, "colour", id="unknown-field"),
        pytest.param({"type": "ok", "args": {}, "step_id": "mine"}, "step_id", id="foreign-field"),
    ],
)
def test_invalid_submit_is_rejected_naming_the_field_and_writes_nothing(
    client: httpx.Client, body: dict[str, Any], field: str
) -> None:
    before = total_steps(client)

    response = client.post("/submit", json=body)

    detail = assert_error(response, 400, "validation_error", "/submit")
    assert field in detail
    assert total_steps(client) == before


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"type": "a" * 128, "args": {}}, id="type-128-characters"),
        pytest.param({"type": "Az09_-.", "args": {}}, id="type-every-allowed-character"),
        pytest.param({"type": "ok", "args": {}, "priority": 1000}, id="priority-1000"),
        pytest.param({"type": "ok", "args": {}, "priority": -1000}, id="priority-minus-1000"),
        pytest.param({"type": "ok", "args": {}, "max_retries": 0}, id="retries-0"),
        pytest.param({"type": "ok", "args": {}, "max_retries": 100}, id="retries-100"),
        pytest.param({"type": "ok", "args": {}, "metadata": None}, id="metadata-null"),
        pytest.param({"type": "ok", "args": {}, "idempotency_key": None}, id="key-null"),
    ],
)
def test_submit_accepts_values_at_the_limits(client: httpx.Client, body: dict[str, Any]) -> None:
    step_id = submit(client, body)

    status = client.get(f"/status/{step_id}").json()
    assert status["payload"]["type"] == body["type"]
    assert status["payload"]["metadata"] == {}


@pytest.mark.parametrize(
    ("content", "detail_word"),
    [
        pytest.param(b'{"type": "ok", "args": {', "JSON", id="truncated"),
        pytest.param(b"{'type': 'ok'}", "JSON", id="single-quotes"),
        pytest.param(b'{"type": "ok", "args": {}, "type": "x"}', "type", id="duplicate-key"),
        pytest.param(b'{"type": "ok", "args": {"x": NaN}}', "NaN", id="nan"),
        pytest.param(b"\xff\xfe", "UTF-8", id="not-utf8"),
        pytest.param(b"[1, 2]", "object", id="array"),
        pytest.param(b'"text"', "object", id="string"),
        pytest.param(b"42", "object", id="number"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_rejected(
    client: httpx.Client, content: bytes, detail_word: str
) -> None:
    before = total_steps(client)

    response = client.post("/submit", content=content, headers={"content-type": "application/json"})

    assert detail_word in assert_error(response, 400, "validation_error", "/submit")
    assert total_steps(client) == before


def _oversized_body() -> bytes:
    padding = "x" * MAX_BODY_BYTES
    return f'{{"type": "ok", "args": {{"padding": "{padding}"}}}}'.encode()


def test_a_body_over_one_mebibyte_is_rejected(client: httpx.Client) -> None:
    before = total_steps(client)

    response = client.post(
        "/submit", content=_oversized_body(), headers={"content-type": "application/json"}
    )

    assert "body" in assert_error(response, 400, "validation_error", "/submit")
    assert total_steps(client) == before


def test_a_chunked_body_over_one_mebibyte_is_rejected(client: httpx.Client) -> None:
    body = _oversized_body()
    chunks = (body[start : start + 65536] for start in range(0, len(body), 65536))
    before = total_steps(client)

    response = client.post("/submit", content=chunks, headers={"content-type": "application/json"})

    assert "body" in assert_error(response, 400, "validation_error", "/submit")
    assert total_steps(client) == before


def test_a_body_just_under_one_mebibyte_is_accepted(client: httpx.Client) -> None:
    envelope = len(b'{"type":"ok","args":{"padding":""}}')
    padding = "x" * (MAX_BODY_BYTES - envelope)
    content = f'{{"type":"ok","args":{{"padding":"{padding}"}}}}'.encode()
    assert len(content) == MAX_BODY_BYTES

    response = client.post("/submit", content=content, headers={"content-type": "application/json"})

    assert response.status_code == 201, response.text[:300]


# ---------------------------------------------------------------------- routing errors


@pytest.mark.parametrize(
    "path",
    ["/nope", "/status", "/status/", "/status/a/b", "/admin", "/admin/queue/extra", "/Health"],
)
def test_an_unknown_path_is_404(client: httpx.Client, path: str) -> None:
    assert_error(client.get(path), 404, "not_found", path)


def test_the_error_path_leaves_out_the_query_string(client: httpx.Client) -> None:
    assert_error(client.get("/nope", params={"a": "1"}), 404, "not_found", "/nope")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/health", "GET, HEAD"),
        ("POST", "/health", "GET, HEAD"),
        ("GET", "/submit", "POST"),
        ("PUT", "/submit", "POST"),
        ("POST", "/status/step_x", "GET, HEAD"),
        ("DELETE", "/idempotency/step_x", "GET, HEAD"),
        ("PATCH", "/admin/queue", "GET, HEAD"),
        ("GET", "/admin/recovery/run", "POST"),
    ],
)
def test_a_wrong_method_on_a_known_path_is_405(
    client: httpx.Client, method: str, path: str, allowed: str
) -> None:
    response = client.request(method, path)

    assert_error(response, 405, "method_not_allowed", path)
    assert response.headers["allow"] == allowed


@pytest.mark.parametrize("route", ["status", "idempotency"])
def test_an_unknown_step_is_404(client: httpx.Client, route: str) -> None:
    path = f"/{route}/step_20240101120000_0000000000000000"

    detail = assert_error(client.get(path), 404, "not_found", path)

    assert "step_20240101120000_0000000000000000" in detail


def test_a_step_id_no_step_can_have_is_rejected_without_a_database_error(
    client: httpx.Client,
) -> None:
    for route in ("status", "idempotency"):
        response = client.get(f"/{route}/step%00x")

        assert "step_id" in assert_error(response, 400, "validation_error", f"/{route}/step\x00x")


def test_an_unknown_query_parameter_is_rejected(client: httpx.Client) -> None:
    step_id = submit(client, {"type": UNHANDLED_TYPE, "args": {}})

    response = client.get(f"/status/{step_id}", params={"verbose": "1"})

    assert "verbose" in assert_error(response, 400, "validation_error", f"/status/{step_id}")


def test_head_on_a_get_route_answers_its_status_and_headers_without_a_body(
    client: httpx.Client,
) -> None:
    response = client.head("/health")

    assert response.status_code == 200
    assert response.content == b""
    # The GET body's length (not compared with a second GET: uptime changes its digits).
    assert int(response.headers["content-length"]) > 0
    assert response.headers["content-type"] == "application/json"
