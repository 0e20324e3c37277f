"""Retention in a running pod: the leader deletes finished steps once they are older than
FLEETQ_RETENTION, and leaves unfinished ones alone."""

from __future__ import annotations

import httpx

from tests.conftest import ServerFactory
from tests.support.waiting import wait_until


def test_the_leader_deletes_finished_steps_past_the_retention_age(
    server_factory: ServerFactory,
) -> None:
    pod = server_factory(
        env={
            "FLEETQ_RETENTION": "1",
            "FLEETQ_RETENTION_INTERVAL": "0.2",
            "FLEETQ_POLL_INTERVAL": "0.2",
        }
    )
    with httpx.Client(base_url=pod.http_url, timeout=10) as http:
        done = http.post("/submit", json={"type": "hello_world", "args": {}}).json()["step_id"]
        waiting = http.post("/submit", json={"type": "nobody_runs_this", "args": {}}).json()
        wait_until(
            lambda: http.get(f"/status/{done}").json()["status"] == "completed",
            timeout=15,
            description="the step to complete",
        )
        wait_until(
            lambda: http.get(f"/status/{done}").status_code == 404,
            timeout=15,
            description="retention to delete the finished step",
        )
        assert http.get(f"/status/{waiting['step_id']}").json()["status"] == "pending"
        stats = http.get("/admin/queue").json()
        assert (stats["completed_steps"], stats["pending_steps"]) == (0, 1)
        assert stats["steps_by_type"] == {"nobody_runs_this": 1}
