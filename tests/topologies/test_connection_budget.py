"""A fleet past what its database could hold directly: 30 pods behind PgBouncer on a server
with max_connections = 50 (directly, with pools of 2, they would need 30 x (2 + heartbeat) = 90)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.topologies import PgBouncer, PostgresNode, scratch_dir
from tests.support.waiting import wait_until

PODS = 30
STEPS = 600
# Requires its own target (make test-fleet): 30 pod processes are heavy on 2 cores.
pytestmark = [pytest.mark.fleet, pytest.mark.timeout(600)]


@pytest.fixture
def small_server() -> Iterator[tuple[PostgresNode, PgBouncer]]:
    base = scratch_dir("fleetq-budget-")
    node = PostgresNode.primary(base, max_connections="50")
    try:
        node.start()
        # Server connections PgBouncer may open: well under 50, whatever the pods want.
        with PgBouncer(node.url(), base, default_pool_size="20") as bouncer:
            yield node, bouncer
    finally:
        node.stop_if_running()
        shutil.rmtree(base, ignore_errors=True)


def test_thirty_pods_behind_pgbouncer_drain_on_a_fifty_connection_server(
    small_server: tuple[PostgresNode, PgBouncer], server_factory: ServerFactory
) -> None:
    _, bouncer = small_server
    env = {
        "FLEETQ_DATABASE_POOLER": "pgbouncer",
        "FLEETQ_DATABASE_POOL_SIZE": "2",
        "FLEETQ_POLL_INTERVAL": "0.5",  # no LISTEN URL: polling
        "FLEETQ_LOG_FORMAT": "console",
    }
    pods: list[ServerProcess] = [
        server_factory(env=env, database_url=bouncer.url("postgres"), wait=False)
        for _ in range(PODS)
    ]
    for pod in pods:
        pod.wait_until_healthy(timeout=120)
    with httpx.Client(base_url=pods[0].http_url, timeout=30) as http:
        body = {"steps": [{"type": "hello_world", "args": {"n": n}} for n in range(STEPS)]}
        assert http.post("/submit/batch", json=body).status_code == 201

        def stats() -> dict[str, int]:
            result: dict[str, int] = http.get("/admin/queue").json()
            return result

        wait_until(lambda: stats()["completed_steps"] == STEPS, timeout=120, description="drain")
        assert stats()["active_pods"] == PODS
    for pod in pods:
        log = pod.log_text()
        assert "database_error" not in log and "too many" not in log.lower(), pod.log_tail()
        assert pod.health_status() == 200
