"""Assertions about what the REST contract promises, shared by the black-box tests."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.support.waiting import wait_until

# The one set of fast pod settings for real server processes; a module that needs other
# values overrides them explicitly ({**FAST_POD_ENV, ...}). Short intervals, so a pod notices
# retries and peers within test time. The dead-pod threshold stays generous: a pod starved of
# CPU on a busy machine must not be declared dead mid-test. No automatic recovery cycles: a
# manual one that met one would rightly answer 409.
FAST_POD_ENV = {
    "FLEETQ_HEARTBEAT_INTERVAL": "0.5",
    "FLEETQ_DEAD_POD_THRESHOLD": "5",
    "FLEETQ_POLL_INTERVAL": "0.2",
    "FLEETQ_RETRY_BACKOFF_BASE": "0.01",
    "FLEETQ_RECOVERY_INTERVAL": "3600",
    "FLEETQ_RECOVERY_ON_EXPIRY": "false",
}

ERROR_KEYS = {"detail", "error_type", "timestamp", "path"}
HEALTH_FIELDS = {
    "pod_id",
    "status",
    "uptime_seconds",
    "current_capacity",
    "max_capacity",
    "is_leader",
    "version",
}
STEP_STATUS_KEYS = {
    "step_id",
    "status",
    "claimed_by",
    "last_update_ts",
    "retry_count",
    "priority",
    "created_ts",
    "max_retries",
    "payload",
    "result",
    "error",
    "run_at",  # appended by issue 14 (scheduled submits)
    "attempts",  # appended by issue 14 (attempt history)
    "cancel_requested",  # appended by issue 14 (CancelStep)
}
STEP_ID = re.compile(r"step_\d{14}_[0-9a-f]{8,}")
# RFC 3339 in UTC with the `Z` suffix, as protojson and the contract's error body write it.
_RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z")
# Server and tests share this machine's clock; the slack only absorbs a slow test run.
_CLOCK_SLACK = timedelta(minutes=5)


def assert_timestamp(text: Any) -> datetime:
    """`text` is an RFC 3339 UTC timestamp ending in Z, close to now; returns it parsed."""
    assert isinstance(text, str) and _RFC3339_UTC.fullmatch(text), f"not RFC 3339 Z: {text!r}"
    whole, _, fraction = text.removesuffix("Z").partition(".")
    moment = datetime.fromisoformat(whole).replace(tzinfo=UTC)
    moment += timedelta(microseconds=int(fraction[:6].ljust(6, "0")) if fraction else 0)
    assert abs(datetime.now(UTC) - moment) < _CLOCK_SLACK, f"{text} is far from now"
    return moment


def assert_integer(value: Any) -> int:
    """A JSON integer: `5`, never `5.0`, never a boolean."""
    assert type(value) is int, f"{value!r} is not a JSON integer"
    return value


def assert_error(response: httpx.Response, status: int, error_type: str, path: str) -> str:
    """The contract's error body, exactly; returns its detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == ERROR_KEYS, body
    assert body["error_type"] == error_type, body
    assert body["path"] == path, body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert_timestamp(body["timestamp"])
    detail: str = body["detail"]
    return detail


def total_steps(client: httpx.Client) -> int:
    """Every step in the database, whatever its status, from GET /admin/queue."""
    response = client.get("/admin/queue")
    assert response.status_code == 200, response.text
    queue = response.json()
    return sum(
        assert_integer(queue[key])
        for key in ("pending_steps", "claimed_steps", "completed_steps", "failed_steps")
    )


def submit(client: httpx.Client, body: dict[str, Any], **kwargs: Any) -> str:
    """POST /submit expecting a new step (201); returns its step_id."""
    response = client.post("/submit", json=body, **kwargs)
    assert response.status_code == 201, response.text
    step_id: str = response.json()["step_id"]
    return step_id


def wait_for_status(
    client: httpx.Client, step_id: str, status: str, timeout: float = 15.0
) -> dict[str, Any]:
    """Poll GET /status/{step_id} until the step reaches `status`; returns that body."""

    def reached() -> dict[str, Any] | None:
        response = client.get(f"/status/{step_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["status"] == status else None

    return wait_until(reached, timeout=timeout, description=f"{step_id} to be {status}")
