"""Fleet-wide limits per step type against real pods, over REST and gRPC: the admin routes
(token protected) and their errors, the limit held by three pods claiming at once (sampled
continuously from the database), a burst of one type leaving room for others, and the
limits shown by /admin/queue and /metrics."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import asyncpg
import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from tests.blackbox.contract import ERROR_KEYS, FAST_POD_ENV
from tests.blackbox.test_metrics import scrape, value
from tests.conftest import ServerFactory
from tests.support.databases import run_sync
from tests.support.server_process import ServerProcess

TOKEN = "limits-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GRPC_AUTH = (("authorization", f"Bearer {TOKEN}"),)
LIMIT = 3


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env={**FAST_POD_ENV, "FLEETQ_ADMIN_TOKEN": TOKEN})


def test_rest_put_list_and_delete_with_the_errors_the_issue_names(client: httpx.Client) -> None:
    assert client.put("/admin/limits/report", json={"max_concurrency": 2}).status_code == 401
    put = client.put(
        "/admin/limits/report",
        json={"max_concurrency": 2, "rate_per_second": 1.5},
        headers=AUTH,
    )
    assert put.status_code == 200, put.text
    assert put.json()["limit"] == {
        "type": "report",
        "max_concurrency": 2,
        "rate_per_second": 1.5,
        "burst": 2,
        "in_flight": 0,
        "source": "api",
    }
    listed = client.get("/admin/limits", headers=AUTH).json()["limits"]
    assert [limit["type"] for limit in listed] == ["report"]
    queue = client.get("/admin/queue", headers=AUTH).json()
    assert queue["type_limits"]["report"]["max_concurrency"] == 2

    for body, field in (
        ({"max_concurrency": -1}, "max_concurrency"),
        ({"rate_per_second": -0.5}, "rate_per_second"),
        ({"rate_per_second": 1, "burst": 0}, "burst"),
        ({}, "max_concurrency"),
    ):
        refused = client.put("/admin/limits/report", json=body, headers=AUTH)
        assert refused.status_code == 400, refused.text
        assert set(refused.json()) == ERROR_KEYS
        assert refused.json()["detail"].startswith(f"{field}:")
    assert client.get("/admin/limits", headers=AUTH).json()["limits"] == listed  # unchanged

    assert client.delete("/admin/limits/report", headers=AUTH).status_code == 200
    gone = client.delete("/admin/limits/report", headers=AUTH)
    assert (gone.status_code, gone.json()["error_type"]) == (404, "not_found")


def test_grpc_set_list_and_delete(stub: fleetq_pb2_grpc.FleetQServiceStub) -> None:
    limit = stub.SetTypeLimit(
        pb.SetTypeLimitRequest(type="grpc-type", rate_per_second=4), metadata=GRPC_AUTH
    ).limit
    assert (limit.burst, limit.HasField("max_concurrency")) == (4, False)
    listed = stub.ListTypeLimits(pb.ListTypeLimitsRequest(), metadata=GRPC_AUTH).limits
    assert "grpc-type" in [item.type for item in listed]
    stub.DeleteTypeLimit(pb.DeleteTypeLimitRequest(type="grpc-type"), metadata=GRPC_AUTH)
    with pytest.raises(grpc.RpcError) as missing:
        stub.DeleteTypeLimit(pb.DeleteTypeLimitRequest(type="grpc-type"), metadata=GRPC_AUTH)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as negative:
        stub.SetTypeLimit(pb.SetTypeLimitRequest(type="x", max_concurrency=-2), metadata=GRPC_AUTH)
    assert negative.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def _sample_claimed(database_url: str, step_type: str, stop_after: float) -> list[int]:
    """The claimed steps of `step_type`, read as fast as one connection can, until
    `stop_after` (monotonic) or until none is pending or claimed any more."""
    connection = await asyncpg.connect(database_url)
    samples: list[int] = []
    try:
        while time.monotonic() < stop_after:
            claimed, left = await connection.fetchrow(
                "SELECT count(*) FILTER (WHERE status = 'claimed'),"
                " count(*) FILTER (WHERE status IN ('pending', 'claimed'))"
                " FROM fleetq_steps WHERE type = $1",
                step_type,
            )
            samples.append(claimed)
            if left == 0 and max(samples) > 0:
                break
            await asyncio.sleep(0)
    finally:
        await connection.close()
    return samples


def test_three_pods_never_hold_more_than_the_limit_and_other_types_still_run(
    server_factory: ServerFactory, database_url: str
) -> None:
    pods = [server_factory(env={**FAST_POD_ENV, "FLEETQ_POD_ID": f"lim-{i}"}) for i in range(3)]
    with httpx.Client(base_url=pods[0].http_url, timeout=10) as client:
        assert client.put("/admin/limits/sleep", json={"max_concurrency": LIMIT}).is_success
        with concurrent.futures.ThreadPoolExecutor(1) as sampler:
            samples = sampler.submit(
                run_sync,
                lambda: _sample_claimed(database_url, "sleep", time.monotonic() + 60),
            )
            burst = [{"type": "sleep", "args": {"seconds": 0.2}, "priority": 1000}] * 30
            assert client.post("/submit/batch", json={"steps": burst}).status_code == 201
            others = client.post(
                "/submit/batch", json={"steps": [{"type": "hello_world", "args": {}}] * 10}
            ).json()["steps"]

            def other_done() -> bool:
                return all(
                    client.get(f"/status/{step['step_id']}").json()["status"] == "completed"
                    for step in others
                )

            deadline = time.monotonic() + 30
            while not other_done():
                assert time.monotonic() < deadline, "hello_world steps starved"
                time.sleep(0.05)
            sleeping = client.get("/admin/queue").json()
            counts = samples.result(timeout=90)
    with httpx.Client(base_url=pods[1].http_url, timeout=10) as other_pod:
        metrics = scrape(other_pod)

    # The high-priority burst did not take every slot: the others finished while most of it
    # still waited.
    assert sleeping["pending_steps"] > 0
    assert max(counts) == LIMIT, f"max claimed {max(counts)} over {len(counts)} samples"
    assert len(counts) > 50
    assert sleeping["type_limits"]["sleep"]["max_concurrency"] == LIMIT
    assert value(metrics, "fleetq_type_limit_max_concurrency", step_type="sleep") == LIMIT
