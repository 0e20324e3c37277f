"""Issue 11, item 8: no client can keep every worker busy. The demo step types (`sleep`,
`hello_world`) run only where configured, and an API token can restrict every RPC but health
to the clients that hold it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fleetq_client import FleetQClient
from fleetq_client.errors import Unauthenticated
from tests.blackbox.contract import FAST_POD_ENV, assert_error
from tests.conftest import ServerFactory
from tests.faults.fault_handlers import HOLD_STEP_TYPE
from tests.support.server_process import REPO_ROOT, ServerProcess
from tests.support.waiting import wait_until

API_TOKEN = "api-" + secrets.token_urlsafe(24)
ADMIN_TOKEN = "admin-" + secrets.token_urlsafe(24)
FAULT_HANDLERS = "tests.faults.fault_handlers"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _submit(pod: ServerProcess, step_type: str, args: dict[str, object], priority: int) -> str:
    response = httpx.post(
        f"{pod.http_url}/submit", json={"type": step_type, "args": args, "priority": priority}
    )
    assert response.status_code == 201, response.text
    step_id: str = response.json()["step_id"]
    return step_id


def _status(pod: ServerProcess, step_id: str) -> str:
    status: str = httpx.get(f"{pod.http_url}/status/{step_id}").json()["status"]
    return status


def test_a_plain_pod_does_not_run_the_demo_step_types(server_factory: ServerFactory) -> None:
    pod = server_factory(
        env={**FAST_POD_ENV, "FLEETQ_HANDLERS": FAULT_HANDLERS, "FLEETQ_POD_ID": "plain"},
        demo_handlers=False,
    )
    # The demo steps go first in claim order: a pod that ran them would claim them before
    # (or with) the step it does run.
    demo = [
        _submit(pod, "sleep", {"seconds": 0}, priority=1000),
        _submit(pod, "hello_world", {}, priority=1000),
    ]
    own = _submit(pod, HOLD_STEP_TYPE, {"seconds": 0}, priority=0)
    wait_until(lambda: _status(pod, own) == "completed", timeout=15, description="hold step")
    assert [_status(pod, step_id) for step_id in demo] == ["pending", "pending"]


@pytest.mark.parametrize(
    "env",
    [
        {"FLEETQ_DEMO_HANDLERS": "true"},
        {"FLEETQ_HANDLERS": "fleetq_server.handlers.builtin"},
    ],
    ids=["setting", "module named"],
)
def test_the_demo_step_types_run_where_configured(
    server_factory: ServerFactory, env: dict[str, str]
) -> None:
    pod = server_factory(env={**FAST_POD_ENV, **env}, demo_handlers=False)
    step_id = _submit(pod, "hello_world", {}, priority=0)
    wait_until(lambda: _status(pod, step_id) == "completed", timeout=15, description="hello")


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    """A pod with both tokens."""
    return module_server_factory(
        env={**FAST_POD_ENV, "FLEETQ_API_TOKEN": API_TOKEN, "FLEETQ_ADMIN_TOKEN": ADMIN_TOKEN}
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/submit", {"type": "hello_world", "args": {}}),
        ("POST", "/submit/batch", {"steps": [{"type": "hello_world", "args": {}}]}),
        ("GET", "/status/step_20240101000000_0000000000000000", None),
        ("GET", "/idempotency/step_20240101000000_0000000000000000", None),
    ],
)
@pytest.mark.parametrize("headers", [{}, _bearer("wrong"), {"Authorization": API_TOKEN}])
def test_every_route_but_health_needs_the_api_token(
    pod: ServerProcess,
    method: str,
    path: str,
    body: dict[str, object] | None,
    headers: dict[str, str],
) -> None:
    response = httpx.request(method, pod.http_url + path, json=body, headers=headers)
    detail = assert_error(response, 401, "unauthenticated", path)
    assert "API token" in detail
    assert API_TOKEN not in response.text and ADMIN_TOKEN not in response.text


def test_the_api_and_admin_tokens_open_the_routes_of_their_kind(pod: ServerProcess) -> None:
    body = {"type": "hello_world", "args": {}}
    for token in (API_TOKEN, ADMIN_TOKEN):  # the admin token grants every RPC
        response = httpx.post(f"{pod.http_url}/submit", json=body, headers=_bearer(token))
        assert response.status_code == 201, response.text
        step_id = response.json()["step_id"]
        assert httpx.get(f"{pod.http_url}/status/{step_id}", headers=_bearer(token)).is_success
    admin = httpx.get(f"{pod.http_url}/admin/queue", headers=_bearer(API_TOKEN))
    assert_error(admin, 401, "unauthenticated", "/admin/queue")
    assert httpx.get(f"{pod.http_url}/admin/queue", headers=_bearer(ADMIN_TOKEN)).is_success


def test_health_and_metrics_stay_open(pod: ServerProcess) -> None:
    assert httpx.get(f"{pod.http_url}/health").status_code == 200
    assert httpx.get(f"{pod.http_url}/metrics").status_code == 200
    with grpc.insecure_channel(pod.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
        assert stub.GetHealth(pb.GetHealthRequest(), timeout=5).status == "healthy"


def test_grpc_calls_need_the_api_token(pod: ServerProcess) -> None:
    request = pb.SubmitStepRequest(type="hello_world")
    request.args.SetInParent()
    with grpc.insecure_channel(pod.grpc_target) as channel:
        stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.SubmitStep(request, timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        metadata = (("authorization", f"Bearer {API_TOKEN}"),)
        assert stub.SubmitStep(request, timeout=5, metadata=metadata).step_id


def test_the_shipped_client_and_cli_send_the_api_token(pod: ServerProcess) -> None:
    with FleetQClient(pod.grpc_target) as anonymous, pytest.raises(Unauthenticated):
        anonymous.submit("hello_world", {})
    with FleetQClient(pod.grpc_target, token=API_TOKEN) as client:
        assert client.submit("hello_world", {}).step_id
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLEETQ_")}

    def cli(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fleetq_server", *argv, "--target", pod.grpc_target],
            env={**base, **env},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert cli("submit", "hello_world").returncode != 0
    assert cli("submit", "hello_world", FLEETQ_API_TOKEN=API_TOKEN).returncode == 0
    assert cli("submit", "hello_world", "--token", API_TOKEN).returncode == 0
    # The admin commands prefer the admin token when both are in the environment.
    both = {"FLEETQ_API_TOKEN": API_TOKEN, "FLEETQ_ADMIN_TOKEN": ADMIN_TOKEN}
    assert cli("queue", **both).returncode == 0
    assert cli("submit", "hello_world", **both).returncode == 0
