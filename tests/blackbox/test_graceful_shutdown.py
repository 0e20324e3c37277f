"""SIGTERM while steps run: unhealthy at once, short steps finish, long ones move on."""

from __future__ import annotations

import signal
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.blackbox.contract import HEALTH_FIELDS, submit, wait_for_status
from tests.blackbox.pods import (
    FLEETQ_SERVICE,
    POD_ENV,
    create_tables,
    executions,
    open_gate,
)
from tests.conftest import ServerFactory
from tests.support.waiting import wait_until

GRACE_S = 3.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# A generous dead-pod threshold: the leaving pod may drop out of /admin/leader only by
# marking itself down, not by its heartbeat going stale.
SHUTDOWN_ENV = {
    **POD_ENV,
    "FLEETQ_SHUTDOWN_GRACE": str(GRACE_S),
    "FLEETQ_DEAD_POD_THRESHOLD": "30",
}


def test_sigterm_finishes_short_steps_releases_long_ones_and_exits_cleanly(
    server_factory: ServerFactory, database_url: str
) -> None:
    create_tables(database_url)
    leaving = server_factory(env=SHUTDOWN_ENV)
    with httpx.Client(base_url=leaving.http_url, timeout=10) as old:
        short = [submit(old, {"type": "gated", "args": {"gate": "short"}}) for _ in range(2)]
        long = [submit(old, {"type": "gated", "args": {"gate": "long"}}) for _ in range(2)]
        for step_id in short + long:
            wait_for_status(old, step_id, "claimed")
        leaving_id = old.get("/health").json()["pod_id"]
        staying = server_factory(env=SHUTDOWN_ENV)  # everything is claimed: it idles

        with grpc.insecure_channel(leaving.grpc_target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=FLEETQ_SERVICE), timeout=30)
            assert next(watch).status == SERVING

            leaving.send_signal(signal.SIGTERM)

            draining = wait_until(
                lambda: (response := old.get("/health")).status_code == 503 and response,
                timeout=GRACE_S / 2,
                description="/health to turn 503",
            ).json()
            assert set(draining) == HEALTH_FIELDS
            assert draining["status"] == "unhealthy"
            assert draining["current_capacity"] == 4, "503 while all four steps still run"
            open_gate(database_url, "short")
            assert next(watch).status == NOT_SERVING
            watch.cancel()
            for service in ("", FLEETQ_SERVICE):
                request = health_pb2.HealthCheckRequest(service=service)
                assert health.Check(request, timeout=5).status == NOT_SERVING, service

        for step_id in short:
            status = wait_for_status(old, step_id, "completed", timeout=GRACE_S)
            assert status["claimed_by"] == leaving_id, "finished within the grace period"

    with httpx.Client(base_url=staying.http_url, timeout=10) as new:
        staying_id = new.get("/health").json()["pod_id"]
        for step_id in long:
            status = wait_for_claim(new, step_id, staying_id)
            assert status["retry_count"] == 0, "a released step spends no retry"

        assert leaving.wait_for_exit(timeout=15) == 0
        leader = new.get("/admin/leader").json()
        live = [pod["pod_id"] for pod in leader["election_details"]["eligible_pods"]]
        assert live == [staying_id], "the leaving pod marked itself down"
        assert leader["current_leader"] == staying_id

        open_gate(database_url, "long")
        for step_id in long:
            status = wait_for_status(new, step_id, "completed")
            assert (status["claimed_by"], status["retry_count"]) == (staying_id, 0)
    runs = sorted(
        (run["step_id"], run["attempt"], run["retry_count"])
        for run in executions(database_url, long)
    )
    assert runs == sorted((step_id, attempt, 0) for step_id in long for attempt in (1, 2)), (
        "each long step ran twice: cut short on the leaving pod, then to the end"
    )


def wait_for_claim(client: httpx.Client, step_id: str, pod_id: str) -> dict[str, Any]:
    """Poll GET /status/{step_id} until `pod_id` holds the step; returns that body."""

    def claimed() -> dict[str, Any] | None:
        status: dict[str, Any] = client.get(f"/status/{step_id}").json()
        return status if status["claimed_by"] == pod_id else None

    return wait_until(claimed, timeout=GRACE_S + 10, description=f"{pod_id} to claim {step_id}")
