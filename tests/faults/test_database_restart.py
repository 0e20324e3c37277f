"""PostgreSQL restarted under load: pods go unhealthy, reconnect by themselves, lose nothing."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import asyncpg
import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fleetq_server.embedded_db import (
    EmbeddedPostgres,
    Release,
    start_embedded_postgres,
    stop_embedded_postgres,
)
from fleetq_server.server import LIVENESS_SERVICE
from tests.conftest import ServerFactory
from tests.faults.fleet import (
    CAPACITY,
    DEAD_THRESHOLD_S,
    HEARTBEAT_S,
    REQUEST_TIMEOUT_S,
    SLACK_S,
    start_pods,
    submit_gated,
    submit_hold,
    wait_all_claimed,
    wait_all_finished,
)
from tests.support.databases import run_sync
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

# Pods re-check the database this often (runtime.pod.HEALTH_CHECK_INTERVAL_S).
HEALTH_CHECK_S = 1.0


class PrivatePostgres:
    """An embedded PostgreSQL this test alone uses, so it may stop and start it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: EmbeddedPostgres = start_embedded_postgres(data_dir, release=Release.STOP)

    @property
    def url(self) -> str:
        return self._server.url

    def stop(self) -> None:
        """Fast shutdown: every client connection is cut."""
        assert stop_embedded_postgres(self.data_dir)

    def start(self) -> None:
        """Start it again on the same socket (same URL)."""
        self._server = start_embedded_postgres(self.data_dir, release=Release.STOP)
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


def grpc_health(pod: ServerProcess, service: str = "") -> int:
    """grpc.health.v1 status of `service` ("": the whole server)."""
    with grpc.insecure_channel(pod.grpc_target) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=REQUEST_TIMEOUT_S
        )
    status: int = response.status
    return status


async def postgres_start_time(database_url: str) -> datetime:
    """When the server last started (database clock)."""
    connection = await asyncpg.connect(database_url)
    try:
        started: datetime = await connection.fetchval("SELECT pg_postmaster_start_time()")
    finally:
        await connection.close()
    return started


# `private_postgres` comes first so that it is torn down last, after the pods have stopped.
def test_pods_ride_out_a_postgres_restart_and_finish_every_step(
    private_postgres: PrivatePostgres, server_factory: ServerFactory, tmp_path: Path
) -> None:
    pods = start_pods(server_factory, ["pg-a", "pg-b"], database_url=private_postgres.url)
    # Every slot runs a gated step, and more steps wait behind them.
    gate = tmp_path / "gate"
    gated = [submit_gated(pods[0], gate) for _ in range(CAPACITY * len(pods))]
    wait_all_claimed(pods[0], gated)
    waiting = [submit_hold(pods[0], 0.2) for _ in range(8)]

    private_postgres.stop()
    stopped_at = time.monotonic()
    for pod in pods:
        wait_until(
            lambda pod=pod: pod.health_status() == 503,
            timeout=HEALTH_CHECK_S + SLACK_S,
            description="/health 503 during the outage",
        )
        assert grpc_health(pod) == health_pb2.HealthCheckResponse.NOT_SERVING
        # Not a reason to restart the pod: the liveness probe's service stays SERVING.
        assert grpc_health(pod, LIVENESS_SERVICE) == health_pb2.HealthCheckResponse.SERVING
    refused = httpx.post(
        pods[1].http_url + "/submit",
        json={"type": "hold", "args": {"seconds": 0}},
        timeout=REQUEST_TIMEOUT_S + 5,
    )
    assert refused.status_code == 500
    assert refused.json()["error_type"] == "database_error"
    gate.touch()  # the gated steps finish now, with no database to record them in
    # The outage's length is part of the scenario: past the dead threshold, so that every
    # pod's heartbeat is stale when the database comes back.
    wait_until(
        lambda: time.monotonic() - stopped_at > DEAD_THRESHOLD_S + HEARTBEAT_S,
        timeout=DEAD_THRESHOLD_S + HEARTBEAT_S + 1,
        description="the outage to outlast the dead threshold",
    )

    private_postgres.start()
    restarted = run_sync(lambda: postgres_start_time(private_postgres.url))
    for pod in pods:
        pod.wait_until_healthy(timeout=HEALTH_CHECK_S + SLACK_S + 5)
        assert grpc_health(pod) == health_pb2.HealthCheckResponse.SERVING
        assert pod.returncode is None  # the same process: reconnected, not restarted
    after = [submit_hold(pod, 0.2) for pod in pods for _ in range(3)]

    final = wait_all_finished(pods[1], gated + waiting + after, timeout=30)
    assert {s["status"] for s in final.values()} == {"completed"}
    for step_id in gated:  # recorded after the restart, not lost with the connection
        assert datetime.fromisoformat(final[step_id]["last_update_ts"]) > restarted


def test_http_probes_livez_stays_200_and_readyz_503_while_the_database_is_down(
    private_postgres: PrivatePostgres, server_factory: ServerFactory
) -> None:
    (pod,) = start_pods(server_factory, ["probe"], database_url=private_postgres.url)

    def probe(path: str) -> int:
        return httpx.get(pod.http_url + path, timeout=REQUEST_TIMEOUT_S).status_code

    assert (probe("/livez"), probe("/readyz")) == (200, 200)
    private_postgres.stop()
    wait_until(
        lambda: probe("/readyz") == 503,
        timeout=HEALTH_CHECK_S + SLACK_S,
        description="/readyz 503 during the outage",
    )
    assert pod.health_status() == 503  # /readyz answers as /health
    for _ in range(3):  # every liveness probe of the outage passes: no restart
        assert probe("/livez") == 200

    private_postgres.start()
    wait_until(
        lambda: probe("/readyz") == 200,
        timeout=HEALTH_CHECK_S + SLACK_S + 5,
        description="/readyz 200 once the database is back",
    )
    assert probe("/livez") == 200
