"""A small fleet of real pods for the fault suite, and the REST calls its tests make.

Intervals are short so that a dead pod is noticed in about two seconds. ``SLACK_S`` is what a
loaded two-core machine may add to a protocol bound (process scheduling, the poll interval of
our own waits); the bounds the tests check are the protocol's plus this slack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.faults.fault_handlers import GATED_STEP_TYPE, HOLD_STEP_TYPE
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

HEARTBEAT_S = 0.25
DEAD_THRESHOLD_S = 1.5
RECOVERY_INTERVAL_S = 0.5
SLACK_S = 3.0
# Each pod runs two steps at once: a test that submits 2 * pods held steps knows every pod
# holds exactly two once all are claimed.
CAPACITY = 2

REQUEST_TIMEOUT_S = 5.0

ServerFactory = Callable[..., ServerProcess]


def fleet_env(pod_id: str, **overrides: str) -> dict[str, str]:
    """Environment of one pod: fast fault detection, the fault handlers, capacity 2."""
    return {
        "FLEETQ_POD_ID": pod_id,
        "FLEETQ_HANDLERS": "tests.faults.fault_handlers",
        "FLEETQ_HEARTBEAT_INTERVAL": str(HEARTBEAT_S),
        "FLEETQ_DEAD_POD_THRESHOLD": str(DEAD_THRESHOLD_S),
        "FLEETQ_RECOVERY_INTERVAL": str(RECOVERY_INTERVAL_S),
        "FLEETQ_POLL_INTERVAL": "0.2",
        "FLEETQ_RETRY_BACKOFF_BASE": "0.01",
        "FLEETQ_MAX_PARALLELISM": str(CAPACITY),
        "FLEETQ_CAPACITY_THRESHOLD": "1",
        "FLEETQ_SHUTDOWN_GRACE": "0.5",
        "FLEETQ_LOG_FORMAT": "console",
        **overrides,
    }


def start_pods(
    server_factory: ServerFactory, pod_ids: Iterable[str], **kwargs: Any
) -> list[ServerProcess]:
    """Start pods in parallel and return them eldest first (the leader first).

    ``kwargs`` go to the server factory; ``env`` entries override :func:`fleet_env`.
    """
    env_overrides = kwargs.pop("env", {})
    pods = {
        pod_id: server_factory(env=fleet_env(pod_id, **env_overrides), wait=False, **kwargs)
        for pod_id in pod_ids
    }
    for pod in pods.values():
        pod.wait_until_healthy()
    live = [p["pod_id"] for p in eligible_pods(next(iter(pods.values())))]
    eldest_first = [pod_id for pod_id in live if pod_id in pods]
    assert sorted(eldest_first) == sorted(pods), live
    return [pods[pod_id] for pod_id in eldest_first]


def pod_id(pod: ServerProcess) -> str:
    """The id a pod was started with (a re-registered pod adds ``-rN`` to it)."""
    return pod.env["FLEETQ_POD_ID"]


def get_json(pod: ServerProcess, path: str) -> Any:
    """GET a REST path that must answer 200."""
    response = httpx.get(pod.http_url + path, timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


def submit(
    pod: ServerProcess, step_type: str, args: dict[str, Any], *, max_retries: int | None = None
) -> str:
    """Submit one step; returns its id."""
    body: dict[str, Any] = {"type": step_type, "args": args}
    if max_retries is not None:
        body["max_retries"] = max_retries
    response = httpx.post(pod.http_url + "/submit", json=body, timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == 201, response.text
    step_id: str = response.json()["step_id"]
    return step_id


def submit_hold(pod: ServerProcess, seconds: float, *, max_retries: int | None = None) -> str:
    """Submit one ``hold`` step; returns its id."""
    return submit(pod, HOLD_STEP_TYPE, {"seconds": seconds}, max_retries=max_retries)


def submit_gated(pod: ServerProcess, gate: Path) -> str:
    """Submit one ``gated`` step, which runs until the file ``gate`` exists."""
    return submit(pod, GATED_STEP_TYPE, {"gate": str(gate)})


def step_status(pod: ServerProcess, step_id: str) -> dict[str, Any]:
    """GET /status/{step_id}."""
    status: dict[str, Any] = get_json(pod, f"/status/{step_id}")
    return status


def statuses(pod: ServerProcess, step_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The status of each step, by id."""
    return {step_id: step_status(pod, step_id) for step_id in step_ids}


def metric_total(pod: ServerProcess, sample_name: str) -> float:
    """The sum of a sample over every label set in the pod's /metrics (0 when absent)."""
    response = httpx.get(pod.http_url + "/metrics", timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == 200, response.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == sample_name
    )


def leader_view(pod: ServerProcess) -> dict[str, Any]:
    """GET /admin/leader."""
    view: dict[str, Any] = get_json(pod, "/admin/leader")
    return view


def eligible_pods(pod: ServerProcess) -> list[dict[str, Any]]:
    """The live pods, eldest first, as ``pod`` reports them."""
    pods: list[dict[str, Any]] = leader_view(pod)["election_details"]["eligible_pods"]
    return pods


def health(pod: ServerProcess) -> dict[str, Any]:
    """GET /health (200 or 503)."""
    response = httpx.get(pod.http_url + "/health", timeout=REQUEST_TIMEOUT_S)
    assert response.status_code in (200, 503), response.text
    body: dict[str, Any] = response.json()
    return body


def wait_all_claimed(
    pod: ServerProcess, step_ids: list[str], timeout: float = 10.0
) -> dict[str, str]:
    """Wait until every step is claimed; returns who holds each."""

    def holders() -> dict[str, str] | None:
        now = statuses(pod, step_ids)
        if all(s["status"] == "claimed" for s in now.values()):
            return {step_id: s["claimed_by"] for step_id, s in now.items()}
        return None

    return wait_until(holders, timeout=timeout, description=f"{len(step_ids)} steps claimed")


def wait_all_finished(
    pod: ServerProcess, step_ids: list[str], timeout: float = 20.0
) -> dict[str, dict[str, Any]]:
    """Wait until every step is completed or failed; returns their final statuses."""

    def finished() -> dict[str, dict[str, Any]] | None:
        now = statuses(pod, step_ids)
        done = all(s["status"] in ("completed", "failed") for s in now.values())
        return now if done else None

    return wait_until(finished, timeout=timeout, description=f"{len(step_ids)} steps finished")


def wait_released_by(
    pod: ServerProcess, step_ids: list[str], holder: str, timeout: float
) -> dict[str, dict[str, Any]]:
    """Wait until none of the steps is claimed by ``holder`` any more (requeued or done)."""

    def released() -> dict[str, dict[str, Any]] | None:
        now = statuses(pod, step_ids)
        held = any(s["status"] == "claimed" and s["claimed_by"] == holder for s in now.values())
        return None if held else now

    return wait_until(released, timeout=timeout, description=f"steps of {holder} requeued")
