"""Access control: with FLEETQ_ADMIN_TOKEN set, the admin RPCs and routes need the bearer token
(REST header and gRPC metadata alike); everything else stays open; without it all is open."""

from __future__ import annotations

import secrets
from typing import Any

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.blackbox.contract import FAST_POD_ENV, assert_error
from tests.conftest import ServerFactory
from tests.support.healthcheck import run_healthcheck
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

TOKEN = "admin-" + secrets.token_urlsafe(24)
WRONG_TOKEN = "admin-" + secrets.token_urlsafe(24)

# The admin routes of the contract, with a request body that changes nothing.
ADMIN_ROUTES = [
    ("GET", "/admin/leader", None),
    ("GET", "/admin/queue", None),
    ("POST", "/admin/recovery/run", {"dry_run": True}),
    ("GET", "/admin/schedules", None),
    ("GET", "/admin/limits", None),
    ("GET", "/admin/throughput", None),
    ("GET", "/admin/recovery/cycles", None),
]
ADMIN_RPCS: list[tuple[str, Any, type[Any]]] = [
    ("GetLeader", pb.GetLeaderRequest(), pb.GetLeaderResponse),
    ("GetQueueStats", pb.GetQueueStatsRequest(), pb.GetQueueStatsResponse),
    ("RunRecovery", pb.RunRecoveryRequest(dry_run=True), pb.RunRecoveryResponse),
    ("ListSchedules", pb.ListSchedulesRequest(), pb.ListSchedulesResponse),
    ("ListTypeLimits", pb.ListTypeLimitsRequest(), pb.ListTypeLimitsResponse),
    ("GetThroughput", pb.GetThroughputRequest(), pb.GetThroughputResponse),
    ("ListRecoveryCycles", pb.ListRecoveryCyclesRequest(), pb.ListRecoveryCyclesResponse),
]
# Authorization headers that must not open an admin route.
REFUSED_HEADERS = {
    "no header": {},
    "wrong token": {"Authorization": f"Bearer {WRONG_TOKEN}"},
    "token prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
    "token and more": {"Authorization": f"Bearer {TOKEN}x"},
    "other scheme": {"Authorization": f"Basic {TOKEN}"},
    "no scheme": {"Authorization": TOKEN},
    "empty bearer": {"Authorization": "Bearer"},
}


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    """A pod with an admin token, debug logging (to prove the token is never logged), and
    leading, so that recovery answers 200 rather than 403 once authorised."""
    pod = module_server_factory(
        env={**FAST_POD_ENV, "FLEETQ_ADMIN_TOKEN": TOKEN, "FLEETQ_LOG_LEVEL": "DEBUG"}
    )

    def leading() -> bool:
        response = httpx.get(f"{pod.http_url}/health", timeout=5)
        return response.status_code == 200 and response.json()["is_leader"] is True

    wait_until(leading, timeout=20, description="the pod to lead")
    return pod


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
@pytest.mark.parametrize("headers", REFUSED_HEADERS.values(), ids=REFUSED_HEADERS.keys())
def test_admin_routes_answer_401_without_the_right_bearer_token(
    client: httpx.Client, method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    response = client.request(method, path, json=body, headers=headers)
    detail = assert_error(response, 401, "unauthenticated", path)
    assert TOKEN not in detail
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_admin_routes_answer_with_the_bearer_token(
    client: httpx.Client, method: str, path: str, body: Any
) -> None:
    assert client.request(method, path, json=body, headers=bearer()).status_code == 200
    # The scheme is case-insensitive (RFC 7235); extra spaces before the token are tolerated.
    lower = {"Authorization": f"bearer   {TOKEN}"}
    assert client.request(method, path, json=body, headers=lower).status_code == 200


@pytest.mark.parametrize(("name", "request_message", "response_class"), ADMIN_RPCS)
def test_admin_rpcs_are_unauthenticated_without_the_right_bearer_token(
    stub: fleetq_pb2_grpc.FleetQServiceStub,
    name: str,
    request_message: Any,
    response_class: type[Any],
) -> None:
    call = getattr(stub, name)
    for metadata in ((), (("authorization", f"Bearer {WRONG_TOKEN}"),)):
        with pytest.raises(grpc.RpcError) as refused:
            call(request_message, metadata=metadata, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert TOKEN not in (refused.value.details() or "")
    reply = call(request_message, metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=10)
    assert isinstance(reply, response_class)


def test_other_routes_rpcs_and_health_need_no_token(
    pod: ServerProcess,
    client: httpx.Client,
    grpc_channel: grpc.Channel,
    stub: fleetq_pb2_grpc.FleetQServiceStub,
) -> None:
    assert client.get("/health").status_code == 200
    submitted = client.post("/submit", json={"type": "hello_world", "args": {"message": "hi"}})
    assert submitted.status_code == 201, submitted.text
    step_id = submitted.json()["step_id"]
    assert client.get(f"/status/{step_id}").status_code == 200
    assert client.get(f"/idempotency/{step_id}").status_code == 200
    assert client.get("/metrics").status_code == 200

    status = stub.GetStepStatus(pb.GetStepStatusRequest(step_id=step_id))
    assert status.step_id == step_id
    health = health_pb2_grpc.HealthStub(grpc_channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    # The container HEALTHCHECK, which carries no token, sees the pod as healthy.
    checked = run_healthcheck(pod)
    assert checked.returncode == 0, checked.stderr
    assert "SERVING" in checked.stdout


def test_the_token_is_never_logged(
    pod: ServerProcess, client: httpx.Client, stub: fleetq_pb2_grpc.FleetQServiceStub
) -> None:
    assert client.get("/admin/queue", headers=bearer(WRONG_TOKEN)).status_code == 401
    assert client.get("/admin/queue", headers=bearer()).status_code == 200
    get_leader = stub.GetLeader
    get_leader(pb.GetLeaderRequest(), metadata=(("authorization", f"Bearer {TOKEN}"),))
    with pytest.raises(grpc.RpcError):
        get_leader(pb.GetLeaderRequest(), metadata=(("authorization", f"Bearer {WRONG_TOKEN}"),))

    log = wait_until(
        lambda: (text := pod.log_text()) and "refused" in text and text,
        timeout=10,
        description="the refusals to be logged",
    )
    assert TOKEN not in log
    assert WRONG_TOKEN not in log


def test_admin_routes_are_open_when_no_token_is_configured(server_factory: ServerFactory) -> None:
    pod = server_factory(env=FAST_POD_ENV)
    with httpx.Client(base_url=pod.http_url, timeout=10) as client:
        assert client.get("/admin/queue").status_code == 200
        # A client that sends a token anyway is not refused.
        assert client.get("/admin/leader", headers=bearer(WRONG_TOKEN)).status_code == 200
    with grpc.insecure_channel(pod.grpc_target) as channel:
        stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
        stats = stub.GetQueueStats(pb.GetQueueStatsRequest(), timeout=10)
        assert stats.active_pods >= 1
