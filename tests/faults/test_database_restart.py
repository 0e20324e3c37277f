"""PostgreSQL restarted under load: pods go unhealthy, reconnect by themselves, lose nothing."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fleetq_server.embedded_db import (
    EmbeddedPostgres,
    start_embedded_postgres,
    stop_embedded_postgres,
)
from tests.conftest import ServerFactory
from tests.faults.fleet import (
    REQUEST_TIMEOUT_S,
    SLACK_S,
    start_pods,
    statuses,
    submit_hold,
    wait_all_finished,
)
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

# Pods re-check the database this often (runtime.pod.HEALTH_CHECK_INTERVAL_S).
HEALTH_CHECK_S = 1.0


class PrivatePostgres:
    """An embedded PostgreSQL this test alone uses, so it may stop and start it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: EmbeddedPostgres = start_embedded_postgres(data_dir, keep_running=False)

    @property
    def url(self) -> str:
        return self._server.url

    def stop(self) -> None:
        """Fast shutdown: every client connection is cut."""
        assert stop_embedded_postgres(self.data_dir)

    def start(self) -> None:
        """Start it again on the same socket (same URL)."""
        self._server = start_embedded_postgres(self.data_dir, keep_running=False)
        assert self._server.url == self.url

    def close(self) -> None:
        self._server.stop()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    # Under /tmp: the Unix socket lives in the data directory and socket paths are short.
    base = Path(tempfile.mkdtemp(prefix="fleetq-fault-pg-"))
    try:
        server = PrivatePostgres(base / "pgdata")
        try:
            yield server
        finally:
            server.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def grpc_health(pod: ServerProcess) -> int:
    """grpc.health.v1 status of the whole server ("")."""
    with grpc.insecure_channel(pod.grpc_target) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=REQUEST_TIMEOUT_S
        )
    status: int = response.status
    return status


# `private_postgres` comes first so that it is torn down last, after the pods have stopped.
def test_pods_ride_out_a_postgres_restart_and_finish_every_step(
    private_postgres: PrivatePostgres, server_factory: ServerFactory
) -> None:
    pods = start_pods(server_factory, ["pg-a", "pg-b"], database_url=private_postgres.url)
    before = [submit_hold(pods[0], 0.3) for _ in range(12)]
    wait_until(
        lambda: any(s["status"] == "completed" for s in statuses(pods[0], before).values()),
        timeout=10,
        description="the first steps to complete",
    )

    private_postgres.stop()
    for pod in pods:
        wait_until(
            lambda pod=pod: pod.health_status() == 503,
            timeout=HEALTH_CHECK_S + SLACK_S,
            description="/health 503 during the outage",
        )
        assert grpc_health(pod) == health_pb2.HealthCheckResponse.NOT_SERVING
    refused = httpx.post(
        pods[1].http_url + "/submit",
        json={"type": "hold", "args": {"seconds": 0}},
        timeout=REQUEST_TIMEOUT_S + 5,
    )
    assert refused.status_code == 500
    assert refused.json()["error_type"] == "database_error"

    private_postgres.start()
    for pod in pods:
        pod.wait_until_healthy(timeout=HEALTH_CHECK_S + SLACK_S + 5)
        assert grpc_health(pod) == health_pb2.HealthCheckResponse.SERVING
        assert pod.returncode is None  # the same process: reconnected, not restarted
    after = [submit_hold(pod, 0.3) for pod in pods for _ in range(3)]

    final = wait_all_finished(pods[1], before + after, timeout=30)
    assert {s["status"] for s in final.values()} == {"completed"}
