"""The REST contract replayed through grpc-gateway v1 (deploy/grpc-gateway) against a real
pod: every route and its error cases answer the same status and body as the pod's own
gateway. Each request goes to both; the bodies are compared whole, but for the values that
differ by nature (times, new step ids, uptime) and, for errors a gateway raises itself before
any call (bad JSON, unknown paths), the detail's wording.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.blackbox.contract import (
    ERROR_KEYS,
    FAST_POD_ENV,
    STEP_ID,
    assert_timestamp,
    submit,
    wait_for_status,
)
from tests.conftest import ServerFactory
from tests.grpc_gateway.conftest import GatewayFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.grpc_gateway

# No pod has a handler for this type, so its steps stay pending.
UNHANDLED = "grpc_gateway.unhandled"


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env=FAST_POD_ENV)


@pytest.fixture(scope="module")
def ours(pod: ServerProcess) -> Iterator[httpx.Client]:
    """The pod's own REST gateway."""
    with httpx.Client(base_url=pod.http_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def theirs(pod: ServerProcess, start_gateway: GatewayFactory) -> Iterator[httpx.Client]:
    """grpc-gateway in front of the same pod's gRPC port."""
    with httpx.Client(base_url=start_gateway(pod.grpc_target), timeout=10) as client:
        yield client


def _json(response: httpx.Response) -> Any:
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return response.json()


def assert_same(
    mine: httpx.Response, other: httpx.Response, ignore: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Same status and body, but for the `ignore`d keys (present in both); returns the body."""
    assert other.status_code == mine.status_code, (mine.text, other.text)
    assert "x-http-code" not in {key.lower() for key in other.headers}
    assert not [key for key in other.headers if key.lower().startswith("grpc-metadata-x-http")]
    expected, got = _json(mine), _json(other)
    for key in ignore:
        assert key in expected and key in got, (key, expected, got)
        del expected[key], got[key]
    assert got == expected
    return dict(got)


def assert_same_error(
    mine: httpx.Response, other: httpx.Response, *, same_detail: bool = True
) -> None:
    """The contract's error body from both; the detail word for word when the servicer
    wrote it (a gateway's own refusals are worded by each gateway)."""
    for response in (mine, other):
        body = _json(response)
        assert set(body) == ERROR_KEYS, body
        assert_timestamp(body["timestamp"])
        assert isinstance(body["detail"], str) and body["detail"]
    assert_same(mine, other, ignore=("timestamp",) if same_detail else ("timestamp", "detail"))


def both(
    ours: httpx.Client, theirs: httpx.Client, method: str, path: str, **kwargs: Any
) -> tuple[httpx.Response, httpx.Response]:
    return ours.request(method, path, **kwargs), theirs.request(method, path, **kwargs)


# ------------------------------------------------------------------------ success answers


def test_health(ours: httpx.Client, theirs: httpx.Client) -> None:
    body = assert_same(*both(ours, theirs, "GET", "/health"), ignore=("uptime_seconds",))
    assert body["status"] == "healthy"


def test_submit_answers_201_through_the_forward_response_option(
    ours: httpx.Client, theirs: httpx.Client
) -> None:
    mine, other = both(ours, theirs, "POST", "/submit", json={"type": UNHANDLED, "args": {"n": 5}})

    body = assert_same(mine, other, ignore=("step_id", "message"))
    assert other.status_code == 201 and body["status"] == "submitted"
    step_id = other.json()["step_id"]
    assert STEP_ID.fullmatch(step_id) and step_id in other.json()["message"]


def test_idempotency_key_header_reaches_the_servicer(
    ours: httpx.Client, theirs: httpx.Client
) -> None:
    body = {"type": UNHANDLED, "args": {"x": 1}}
    first = theirs.post("/submit", json=body, headers={"Idempotency-Key": "gw-header-1"})
    assert first.status_code == 201, first.text

    mine, other = both(
        ours, theirs, "POST", "/submit", json=body, headers={"Idempotency-Key": "gw-header-1"}
    )

    assert_same(mine, other)
    assert other.status_code == 200 and other.json()["step_id"] == first.json()["step_id"]


def test_status_idempotency_and_watch_of_a_step(ours: httpx.Client, theirs: httpx.Client) -> None:
    pending = submit(
        ours,
        {
            "type": UNHANDLED,
            "args": {"n": 5, "big": 2**40, "f": 0.5},
            "max_retries": 0,
            "delay_seconds": 3600,
            "idempotency_key": "gw-body-1",
            "metadata": {"m": [1, None]},
        },
    )
    status = assert_same(*both(ours, theirs, "GET", f"/status/{pending}"))
    assert status["claimed_by"] is None  # presence: null while unset, on both
    assert status["max_retries"] == 0 and status["run_at"] is not None
    assert status["payload"]["args"] == {"n": 5, "big": 2**40, "f": 0.5}
    key = assert_same(*both(ours, theirs, "GET", f"/idempotency/{pending}"))
    assert key["idempotency_key"] == "gw-body-1"

    done = submit(ours, {"type": "hello_world", "args": {"message": "gw"}})
    wait_for_status(ours, done, "completed")
    assert_same(*both(ours, theirs, "GET", f"/status/{done}"))
    mine, other = both(ours, theirs, "GET", f"/steps/{done}:watch")
    assert other.status_code == mine.status_code == 200
    lines = [_lines(response) for response in (mine, other)]
    assert lines[1] == lines[0] and lines[0][0]["result"]["status"] == "completed"


def _lines(response: httpx.Response) -> list[Any]:
    import json

    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def test_batch(ours: httpx.Client, theirs: httpx.Client) -> None:
    batch = {"steps": [{"type": UNHANDLED, "args": {}}, {"type": UNHANDLED, "args": {"i": 2}}]}
    mine, other = both(ours, theirs, "POST", "/submit/batch", json=batch)

    assert other.status_code == mine.status_code == 201, (mine.text, other.text)
    assert _json(other)["created_count"] == _json(mine)["created_count"] == 2
    assert len(_json(other)["steps"]) == 2


def test_admin_routes(ours: httpx.Client, theirs: httpx.Client) -> None:
    leader = assert_same(
        *both(ours, theirs, "GET", "/admin/leader"), ignore=("last_election_check",)
    )
    assert leader["current_leader"] and leader["active_pods"] == 1
    queue = assert_same(*both(ours, theirs, "GET", "/admin/queue"))
    assert queue["current_leader"] == leader["current_leader"]
    mine, other = both(ours, theirs, "POST", "/admin/recovery/run", json={"dry_run": True})
    assert other.status_code == mine.status_code == 200, (mine.text, other.text)
    assert set(_json(other)) == set(_json(mine))
    assert _json(other)["status"] == _json(mine)["status"] == "dry_run"
    assert set(_json(other)["recovery_summary"]) == set(_json(mine)["recovery_summary"])


# ------------------------------------------------------------------------ error answers


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/submit", {"args": {}}),  # no type
        ("POST", "/submit", {"type": "bad type!", "args": {}}),
        ("POST", "/submit", {"type": UNHANDLED}),  # no args
        ("POST", "/submit", {"type": UNHANDLED, "args": {}, "priority": 5000}),
        ("POST", "/submit", {"type": UNHANDLED, "args": {}, "max_retries": 101}),
        (
            "POST",
            "/submit",
            {"type": UNHANDLED, "args": {}, "delay_seconds": 1, "run_at": "2030-01-01T00:00:00Z"},
        ),
        ("POST", "/submit/batch", {"steps": []}),
        ("POST", "/submit/batch", {"steps": [{"type": UNHANDLED, "args": {}}, {"args": {}}]}),
        ("GET", "/status/step_20240101120000_00000000", None),
        ("GET", f"/status/{'x' * 200}", None),
        ("GET", "/idempotency/step_20240101120000_00000000", None),
        ("GET", "/steps/step_20240101120000_00000000:watch", None),
    ],
)
def test_errors_the_servicer_raises(
    ours: httpx.Client, theirs: httpx.Client, method: str, path: str, body: Any
) -> None:
    mine, other = both(ours, theirs, method, path, json=body)

    assert mine.status_code in (400, 404), mine.text
    assert_same_error(mine, other)


def test_a_reused_idempotency_key_with_another_payload_is_a_conflict(
    ours: httpx.Client, theirs: httpx.Client
) -> None:
    submit(ours, {"type": UNHANDLED, "args": {"a": 1}, "idempotency_key": "gw-conflict"})
    mine, other = both(
        ours,
        theirs,
        "POST",
        "/submit",
        json={"type": UNHANDLED, "args": {"a": 2}, "idempotency_key": "gw-conflict"},
    )

    assert mine.status_code == 409
    assert_same_error(mine, other)


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [
        ("POST", "/submit", b'{"type": "x", "args": {'),  # not JSON
        ("POST", "/submit", b'{"type": "x", "args": {}, "surprise": 1}'),  # unknown field
        ("POST", "/submit", b'{"type": 5, "args": {}}'),  # wrong type
        ("GET", "/no/such/route", None),
        ("DELETE", "/health", None),  # a known path, another method
    ],
)
def test_errors_a_gateway_raises_itself(
    ours: httpx.Client, theirs: httpx.Client, method: str, path: str, content: bytes | None
) -> None:
    headers = {"content-type": "application/json"} if content else {}
    mine, other = both(ours, theirs, method, path, content=content, headers=headers)

    assert mine.status_code in (400, 404, 405), mine.text
    assert_same_error(mine, other, same_detail=False)


# ------------------------------------------------------------------------ an unhealthy pod


def test_a_draining_pod_answers_503_through_the_gateway(
    module_server_factory: ServerFactory, start_gateway: GatewayFactory
) -> None:
    """What a Kubernetes probe through the gateway must see (issue 18)."""
    draining = module_server_factory(env={**FAST_POD_ENV, "FLEETQ_SHUTDOWN_GRACE": "60"})
    gateway = start_gateway(draining.grpc_target)
    with (
        httpx.Client(base_url=draining.http_url, timeout=10) as mine,
        httpx.Client(base_url=gateway, timeout=10) as other,
    ):
        step_id = submit(mine, {"type": "sleep", "args": {"seconds": 60}})
        wait_for_status(mine, step_id, "claimed")
        draining.send_signal(signal.SIGTERM)
        wait_until(lambda: mine.get("/health").status_code == 503, timeout=15, description="503")

        body = assert_same(mine.get("/health"), other.get("/health"), ignore=("uptime_seconds",))

    assert body["status"] == "unhealthy"
    draining.kill()
