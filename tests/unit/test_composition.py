"""The composition root's build functions, on the in-memory store: the gRPC server and the
HTTP app are built, and answer, without binding the ports the settings name."""

import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc
from google.protobuf import struct_pb2
from grpc_health.v1._async import HealthServicer

from fleetq_server.config import Settings
from fleetq_server.handlers import StepContext
from fleetq_server.runtime.pod import Pod
from fleetq_server.server import build_grpc_server, build_handlers, build_http_app
from tests.support.memory_store import MemoryStore
from tests.support.net import free_port
from tests.unit.runtime.helpers import registry

ADMIN_TOKEN = "composition-test-admin-token"


async def echo(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    return args


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def settings() -> Settings:
    return Settings(
        pod_id="pod-a",
        grpc_host="127.0.0.1",
        grpc_port=free_port(),
        http_host="127.0.0.1",
        http_port=free_port(),
        admin_token=ADMIN_TOKEN,
    )


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def pod(settings: Settings, store: MemoryStore) -> Pod:
    return Pod(settings, store, registry(echo=echo))  # built, never started


@pytest.fixture
async def http(
    settings: Settings, store: MemoryStore, pod: Pod
) -> AsyncIterator[httpx.AsyncClient]:
    handlers, protected = build_handlers(settings, pod)
    app = build_http_app(settings, handlers, store, protected)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fleetq") as client:
        yield client


async def test_the_http_app_submits_and_reports_a_step_without_a_port(
    settings: Settings, store: MemoryStore, http: httpx.AsyncClient
) -> None:
    submitted = await http.post("/submit", json={"type": "echo", "args": {"n": 1}})
    assert submitted.status_code == 201, submitted.text
    step_id = submitted.json()["step_id"]
    status = await http.get(f"/status/{step_id}")
    assert (status.status_code, status.json()["status"]) == (200, "pending")
    assert (await store.step_get(step_id)).args == {"n": 1}
    assert port_is_free(settings.http_port)


async def test_the_http_app_mounts_metrics_and_the_openapi_document(
    http: httpx.AsyncClient,
) -> None:
    await http.post("/submit", json={"type": "echo", "args": {}})
    metrics = await http.get("/metrics")
    assert metrics.status_code == 200
    # Read from the store on scrape.
    assert 'fleetq_queue_steps{status="pending"} 1.0' in metrics.text.splitlines()
    document = (await http.get("/openapi.json")).json()
    assert "/submit" in document["paths"]
    recovery = document["paths"]["/admin/recovery/run"]["post"]
    assert recovery.get("security"), "the admin token protects recovery"


async def test_the_http_app_asks_for_the_admin_token_where_it_is_set(
    http: httpx.AsyncClient,
) -> None:
    refused = await http.post("/admin/recovery/run", json={"dry_run": True})
    assert refused.status_code == 401


async def test_the_grpc_server_is_built_without_binding_its_port_and_serves_once_bound(
    settings: Settings, store: MemoryStore, pod: Pod
) -> None:
    handlers, _ = build_handlers(settings, pod)
    server = build_grpc_server(settings, handlers, HealthServicer())
    assert port_is_free(settings.grpc_port)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
            request = pb.SubmitStepRequest(type="echo", args=struct_pb2.Struct())
            response = await stub.SubmitStep(request, timeout=5)
    finally:
        await server.stop(None)
    assert (await store.step_get(response.step_id)).type == "echo"
