"""GET /health and grpc.health.v1 tell the truth about capacity, leadership and version."""

from __future__ import annotations

import signal
from importlib.metadata import version
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.blackbox.contract import HEALTH_FIELDS, submit
from tests.blackbox.pods import FLEETQ_SERVICE, POD_ENV, create_tables, open_gate
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until


def health(pod: ServerProcess) -> dict[str, Any]:
    """GET /health, which must answer 200 with every field."""
    response = httpx.get(f"{pod.http_url}/health", timeout=5)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == HEALTH_FIELDS, body
    return body


def test_health_reports_running_steps_capacity_leadership_and_version(
    server_factory: ServerFactory, database_url: str
) -> None:
    create_tables(database_url)
    # floor(3 * 0.9) = 2: the product is floored, not rounded.
    small = {"FLEETQ_MAX_PARALLELISM": "3", "FLEETQ_CAPACITY_THRESHOLD": "0.9"}
    eldest = server_factory(env={**POD_ENV, **small})
    with httpx.Client(base_url=eldest.http_url, timeout=10) as client:
        for _ in range(3):
            submit(client, {"type": "gated", "args": {"gate": "go"}})
    wait_until(lambda: health(eldest)["current_capacity"] == 2, timeout=10, description="2 running")
    younger = server_factory(env=POD_ENV)  # picks up the third step, still queued

    first, second = health(eldest), health(younger)
    assert first["status"] == second["status"] == "healthy"
    assert first["version"] == second["version"] == version("fleetq")
    assert (first["max_capacity"], first["current_capacity"]) == (2, 2)
    assert second["max_capacity"] == 8
    assert (first["is_leader"], second["is_leader"]) == (True, False)
    assert first["pod_id"] != second["pod_id"]
    assert first["uptime_seconds"] > 0
    wait_until(
        lambda: health(younger)["current_capacity"] == 1, timeout=10, description="1 running"
    )
    open_gate(database_url, "go")
    wait_until(
        lambda: health(eldest)["current_capacity"] == 0 == health(younger)["current_capacity"],
        timeout=10,
        description="both pods to be idle",
    )
    assert health(eldest)["uptime_seconds"] > first["uptime_seconds"]

    for pod in (eldest, younger):
        with grpc.insecure_channel(pod.grpc_target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for service in ("", FLEETQ_SERVICE):
                request = health_pb2.HealthCheckRequest(service=service)
                serving = health_pb2.HealthCheckResponse.SERVING
                assert stub.Check(request, timeout=5).status == serving, service
                watch = stub.Watch(request, timeout=5)
                assert next(watch).status == serving, service
                watch.cancel()

    # SIGINT stops a pod as gracefully as SIGTERM; the next eldest then leads.
    eldest.send_signal(signal.SIGINT)
    assert eldest.wait_for_exit(timeout=15) == 0
    wait_until(lambda: health(younger)["is_leader"], timeout=5, description="a new leader")


def test_livez_answers_while_serving_and_readyz_answers_as_health(
    server_factory: ServerFactory,
) -> None:
    pod = server_factory(env=POD_ENV)
    with httpx.Client(base_url=pod.http_url, timeout=5) as client:
        livez = client.get("/livez")
        assert livez.status_code == 200 and livez.json() == {"status": "alive"}
        readyz = client.get("/readyz")
        assert readyz.status_code == 200, readyz.text
        assert set(readyz.json()) == HEALTH_FIELDS
        assert readyz.json()["pod_id"] == health(pod)["pod_id"]
        head = client.head("/livez")
        assert head.status_code == 200 and head.content == b""

        for path in ("/livez", "/readyz"):
            refused = client.post(path, json={})
            assert refused.status_code == 405, refused.text
            assert refused.headers["allow"] == "GET"
            body = refused.json()
            assert set(body) == {"detail", "error_type", "timestamp", "path"}
            assert (body["error_type"], body["path"]) == ("method_not_allowed", path)
