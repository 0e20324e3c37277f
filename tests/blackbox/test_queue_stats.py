"""GET /admin/queue across two real pods: exact figures for a known mix of steps in every
status, priority and type, and the same figures over gRPC."""

from __future__ import annotations

from typing import Any

import httpx

from fleetq_client import FleetQClient
from tests.blackbox.contract import FAST_POD_ENV
from tests.conftest import ServerFactory
from tests.support.waiting import wait_until

FAST = {
    **FAST_POD_ENV,
    "FLEETQ_HEARTBEAT_INTERVAL": "0.2",  # capacities reach the stats with each heartbeat
    "FLEETQ_SHUTDOWN_GRACE": "0",  # the long sleeps are abandoned when the test ends
}


def submit(http: httpx.Client, step_type: str, args: dict[str, Any], **fields: Any) -> str:
    response = http.post("/submit", json={"type": step_type, "args": args, **fields})
    assert response.status_code == 201, response.text
    step_id: str = response.json()["step_id"]
    return step_id


def test_queue_stats_report_exact_figures_for_every_status_priority_type_and_pod(
    server_factory: ServerFactory,
) -> None:
    # Capacities 1 and 3 (floor(parallelism * 0.8)), so four long sleeps fill both pods.
    leader = server_factory(env={**FAST, "FLEETQ_POD_ID": "pod-a", "FLEETQ_MAX_PARALLELISM": "2"})
    follower = server_factory(env={**FAST, "FLEETQ_POD_ID": "pod-b", "FLEETQ_MAX_PARALLELISM": "4"})
    with httpx.Client(base_url=follower.http_url, timeout=10) as http:
        finished = [submit(http, "hello_world", {}, priority=p) for p in (0, 1, 2)]
        finished += [submit(http, "sleep", {"seconds": "x"}, max_retries=0) for _ in range(2)]

        def all_finished() -> bool:
            statuses = [http.get(f"/status/{step}").json()["status"] for step in finished]
            return statuses == ["completed"] * 3 + ["failed"] * 2

        wait_until(all_finished, timeout=15, description="three completed and two failed")
        for _ in range(4):
            submit(http, "sleep", {"seconds": 60}, priority=3)
        # Nobody runs these types: they stay pending.
        for step_type, priority in (("report", 5), ("report", 5), ("email", -1)):
            submit(http, step_type, {}, priority=priority)

        def full_pods() -> dict[str, Any] | None:
            stats: dict[str, Any] = http.get("/admin/queue").json()
            capacity = stats["pod_capacity"]
            return (
                stats if capacity["pod-a"]["current"] + capacity["pod-b"]["current"] == 4 else None
            )

        stats = wait_until(full_pods, timeout=15, description="both pods full, per heartbeats")

    assert stats == {
        "pending_steps": 3,
        "claimed_steps": 4,
        "completed_steps": 3,
        "failed_steps": 2,
        "cancelled_steps": 0,  # appended by issue 14 (CancelStep)
        "active_pods": 2,
        "current_leader": "pod-a",
        "queue_depth_by_priority": {"5": 2, "-1": 1},
        "steps_by_type": {"hello_world": 3, "sleep": 6, "report": 2, "email": 1},
        "pod_capacity": {"pod-a": {"current": 1, "max": 1}, "pod-b": {"current": 3, "max": 3}},
        "type_limits": {},  # no step type has a fleet-wide limit here (issue 16)
        "workers": [],
    }
    with FleetQClient(leader.grpc_target) as client:
        over_grpc = client.queue_stats()
    assert (over_grpc.pending_steps, over_grpc.claimed_steps) == (3, 4)
    assert (over_grpc.completed_steps, over_grpc.failed_steps) == (3, 2)
    assert over_grpc.queue_depth_by_priority == {5: 2, -1: 1}
    assert over_grpc.steps_by_type == stats["steps_by_type"]
