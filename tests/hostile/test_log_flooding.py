"""A client cannot flood a pod's log: warnings it can trigger at will (a refused admin
call, a malformed HTTP request) come out once per kind per FLEETQ_LOG_REPEAT_INTERVAL,
the next line saying how many were held back, and name the caller's address."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import grpc
import httpx
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

REFUSED_CALLS = 200
MALFORMED_REQUESTS = 50
REPEAT_INTERVAL_S = 0.5
ENV = {"FLEETQ_ADMIN_TOKEN": "s3cret", "FLEETQ_LOG_REPEAT_INTERVAL": str(REPEAT_INTERVAL_S)}


def log_entries(pod: ServerProcess) -> list[dict[str, Any]]:
    """The pod's JSON log lines (the first line is the test helper's command line)."""
    return [json.loads(line) for line in pod.log_text().splitlines()[1:]]


def refusals(pod: ServerProcess) -> list[dict[str, Any]]:
    return [e for e in log_entries(pod) if e["message"].startswith("refused ")]


def refuse_once(http: httpx.Client, stub: fleetq_pb2_grpc.FleetQServiceStub, n: int) -> None:
    """One admin call without the token, over REST or gRPC by turns."""
    if n % 2:
        assert http.get("/admin/queue").status_code == 401
        return
    try:
        stub.GetQueueStats(pb.GetQueueStatsRequest())
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    else:
        raise AssertionError("an admin call without the token was answered")


def test_refused_admin_calls_write_a_few_lines_naming_the_peer_and_the_count(
    server_factory: ServerFactory,
) -> None:
    pod = server_factory(env=ENV)
    with (
        httpx.Client(base_url=pod.http_url, timeout=10) as http,
        grpc.insecure_channel(pod.grpc_target) as channel,
    ):
        stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
        started = time.monotonic()
        for n in range(REFUSED_CALLS):
            refuse_once(http, stub, n)
        sent = REFUSED_CALLS

        def every_call_was_accounted_for() -> bool:
            # One more refused call per check: once the interval has passed, it is let
            # through and reports every call held back since the previous line.
            nonlocal sent
            refuse_once(http, stub, sent)
            sent += 1
            return sum(1 + entry.get("suppressed", 0) for entry in refusals(pod)) == sent

        wait_until(every_call_was_accounted_for, timeout=20, description="all calls counted")
        elapsed = time.monotonic() - started

    lines = refusals(pod)
    # At most one line per interval of the run (a loaded machine makes the run longer),
    # however many calls were refused.
    assert len(lines) <= 2 + elapsed / REPEAT_INTERVAL_S, [entry["message"] for entry in lines]
    assert all("127.0.0.1" in entry["message"] for entry in lines)
    # Every refused call is accounted for: each line stands for itself and those it held
    # back (the last call sent is the one that wrote the last line).
    assert sum(1 + entry.get("suppressed", 0) for entry in lines) == sent
    assert "more like this suppressed" in lines[-1]["message"]


def test_malformed_http_requests_write_a_few_lines(server_factory: ServerFactory) -> None:
    pod = server_factory(env=ENV)
    before = len(log_entries(pod))

    for _ in range(MALFORMED_REQUESTS):
        with socket.create_connection(("127.0.0.1", pod.http_port), timeout=10) as sock:
            sock.sendall(b"NOT HTTP AT ALL\x00\r\n\r\n")
            while sock.recv(65536):  # the pod answers (or not) and closes
                pass

    assert pod.health_status() == 200
    assert len(log_entries(pod)) - before <= 5
