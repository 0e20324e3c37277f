"""Slow or idle HTTP clients cannot hold the pod's connections: header and body read
deadlines, a cap on open connections, and the open-file limit raised at start-up."""

from __future__ import annotations

import contextlib
import resource
import sys
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ServerFactory
from tests.hostile.raw_http import assert_error_body, connect, read_response, wait_for_close
from tests.support.server_process import ServerProcess

# Short deadlines, so a test sees them pass; the socket timeout (20 s) bounds each wait.
TIMEOUTS_ENV = {"FLEETQ_HTTP_HEADER_TIMEOUT": "1", "FLEETQ_HTTP_BODY_TIMEOUT": "1"}


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env=TIMEOUTS_ENV)


def test_an_idle_connection_is_closed_after_the_header_timeout(pod: ServerProcess) -> None:
    with connect(pod) as sock:
        assert wait_for_close(sock) == b""  # closed without an answer: nobody asked


def test_a_half_sent_head_gets_408_then_the_connection_closes(pod: ServerProcess) -> None:
    with connect(pod) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: fleetq\r\nX-Slow: ")
        response = read_response(sock)
        wait_for_close(sock)

    body = assert_error_body(response, 408, "timeout")
    assert "headers" in body["detail"]


def test_a_half_sent_body_gets_408_then_the_connection_closes(pod: ServerProcess) -> None:
    with connect(pod) as sock:
        sock.sendall(
            b"POST /submit HTTP/1.1\r\nHost: fleetq\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"type": "hello_world"'
        )
        response = read_response(sock)
        wait_for_close(sock)

    body = assert_error_body(response, 408, "timeout")
    assert "body" in body["detail"]
    assert body["path"] == "/submit"


def test_a_kept_alive_connection_still_serves_requests_within_the_deadlines(
    pod: ServerProcess,
) -> None:
    with httpx.Client(base_url=pod.http_url, timeout=20) as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200
            submitted = client.post("/submit", json={"type": "hello_world", "args": {}})
            assert submitted.status_code == 201, submitted.text


def soft_open_file_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit")


def test_connections_over_the_cap_get_503_while_grpc_stays_available(
    server_factory: ServerFactory,
) -> None:
    cap = 4
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Started with a low soft limit, which the pod raises to the hard one.
    pod = server_factory(
        env={"FLEETQ_HTTP_MAX_CONNECTIONS": str(cap)},
        program=["prlimit", f"--nofile=256:{hard}", "--", sys.executable, "-m", "fleetq_server"],
    )
    assert soft_open_file_limit(pod.pid) == hard

    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(connect(pod)) for _ in range(cap)]
        for sock in held:  # answered, so certainly counted by the server
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: fleetq\r\n\r\n")
            assert read_response(sock).status == 200
        with connect(pod) as extra:
            refused = read_response(extra)
            wait_for_close(extra)
        with grpc.insecure_channel(pod.grpc_target) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="liveness"), timeout=10
            )

    body = assert_error_body(refused, 503, "resource_exhausted")
    assert "connections" in body["detail"]
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    # Once the held connections close, new ones are served again.
    assert httpx.get(f"{pod.http_url}/health", timeout=20).status_code == 200


def test_invalid_limits_stop_start_up(server_factory: ServerFactory) -> None:
    pod = server_factory(env={"FLEETQ_HTTP_MAX_HEADER_BYTES": "1048576"}, wait=False)
    assert pod.wait_for_exit(30) == 2
    assert "FLEETQ_HTTP_MAX_HEADER_BYTES" in pod.log_text()
