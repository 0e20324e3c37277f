"""Issue 11, item 9: pending steps of types no pod runs cannot make the queue statistics grow
without bound, and may be given an expiry after which they fail as `expired`."""

from __future__ import annotations

from typing import Any

import httpx

from fleetq_client import FleetQClient
from tests.blackbox.contract import FAST_POD_ENV, assert_error
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

# More types than the statistics name (50), none of them run by any pod.
TYPE_COUNT = 120
OTHER = "(other)"


def _batch(pod: ServerProcess, steps: list[dict[str, Any]]) -> list[str]:
    response = httpx.post(f"{pod.http_url}/submit/batch", json={"steps": steps}, timeout=30)
    assert response.status_code == 201, response.text
    return [step["step_id"] for step in response.json()["steps"]]


def _status(pod: ServerProcess, step_id: str) -> dict[str, Any]:
    status: dict[str, Any] = httpx.get(f"{pod.http_url}/status/{step_id}").json()
    return status


def test_queue_statistics_name_the_top_types_and_sum_the_others(
    server_factory: ServerFactory,
) -> None:
    pod = server_factory(env=FAST_POD_ENV)
    # Type k has k + 1 steps, so the top 50 are unambiguous: orphan-070 .. orphan-119.
    steps = [
        {"type": f"orphan-{k:03d}", "args": {}} for k in range(TYPE_COUNT) for _ in range(k + 1)
    ]
    for start in range(0, len(steps), 1000):
        _batch(pod, steps[start : start + 1000])

    stats = httpx.get(f"{pod.http_url}/admin/queue").json()
    by_type = stats["steps_by_type"]
    assert set(by_type) == {f"orphan-{k:03d}" for k in range(70, TYPE_COUNT)} | {OTHER}
    assert by_type[OTHER] == sum(range(1, 71))
    assert sum(by_type.values()) == len(steps) == stats["pending_steps"]
    with FleetQClient(pod.grpc_target) as client:
        assert client.queue_stats().steps_by_type == by_type


def test_a_pending_step_fails_as_expired_after_its_own_expiry(
    server_factory: ServerFactory,
) -> None:
    pod = server_factory(env={**FAST_POD_ENV, "FLEETQ_RETENTION_INTERVAL": "0.2"})
    expiring, kept = _batch(
        pod,
        [
            {"type": "nobody-runs-this", "args": {}, "pending_expiry_seconds": 0.5},
            {"type": "nobody-runs-this", "args": {}},
        ],
    )
    wait_until(
        lambda: _status(pod, expiring)["status"] == "failed", timeout=15, description="expiry"
    )
    assert _status(pod, expiring)["error"]["type"] == "expired"
    assert _status(pod, kept)["status"] == "pending"


def test_the_pods_pending_expiry_applies_unless_a_submit_says_otherwise(
    server_factory: ServerFactory,
) -> None:
    env = {**FAST_POD_ENV, "FLEETQ_RETENTION_INTERVAL": "0.2", "FLEETQ_PENDING_EXPIRY": "0.5"}
    pod = server_factory(env=env)
    expiring, kept = _batch(
        pod,
        [
            {"type": "nobody-runs-this", "args": {}},
            {"type": "nobody-runs-this", "args": {}, "pending_expiry_seconds": 0},
        ],
    )
    wait_until(
        lambda: _status(pod, expiring)["status"] == "failed", timeout=15, description="expiry"
    )
    assert _status(pod, expiring)["error"]["type"] == "expired"
    assert _status(pod, kept)["status"] == "pending"


def test_the_pending_expiry_field_is_validated(server_factory: ServerFactory) -> None:
    pod = server_factory(env=FAST_POD_ENV)
    body: dict[str, Any] = {"type": "nobody-runs-this", "args": {}}
    for valid in (0, 0.25, 31_536_000):
        response = httpx.post(
            f"{pod.http_url}/submit", json={**body, "pending_expiry_seconds": valid}
        )
        assert response.status_code == 201, response.text
    for invalid in (-1, 31_536_001, "soon"):
        response = httpx.post(
            f"{pod.http_url}/submit", json={**body, "pending_expiry_seconds": invalid}
        )
        detail = assert_error(response, 400, "validation_error", "/submit")
        assert "pending_expiry_seconds" in detail
    assert httpx.get(f"{pod.http_url}/admin/queue").json()["pending_steps"] == 3
