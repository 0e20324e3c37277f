"""GetThroughput and ListRecoveryCycles against a real pod over both protocols: counts that
match real steps finishing, every minute listed, recovery cycles newest first in keyset
pages, and 400s naming the parameter. (The admin token's refusals: test_access_control.)"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from tests.blackbox.contract import (
    FAST_POD_ENV,
    assert_error,
    assert_integer,
    assert_timestamp,
    submit,
    wait_for_status,
)
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    """A pod that leads (so that it can run recovery cycles)."""
    pod = module_server_factory(env=FAST_POD_ENV)

    def leading() -> bool:
        return bool(httpx.get(f"{pod.http_url}/health", timeout=5).json()["is_leader"])

    wait_until(leading, timeout=20, description="the pod to lead")
    return pod


def rest_totals(client: httpx.Client) -> tuple[int, int]:
    """Completed and failed steps over the whole ring (this module's database is new)."""
    response = client.get("/admin/throughput", params={"minutes": "120"})
    assert response.status_code == 200, response.text
    minutes = response.json()["minutes"]
    assert len(minutes) == 120
    return (
        sum(assert_integer(m["completed_steps"]) for m in minutes),
        sum(assert_integer(m["failed_steps"]) for m in minutes),
    )


def grpc_totals(stub: fleetq_pb2_grpc.FleetQServiceStub) -> tuple[int, int]:
    series = stub.GetThroughput(pb.GetThroughputRequest(minutes=120), timeout=10).minutes
    return sum(m.completed_steps for m in series), sum(m.failed_steps for m in series)


def test_throughput_counts_the_steps_that_really_completed_and_failed(
    client: httpx.Client, stub: fleetq_pb2_grpc.FleetQServiceStub
) -> None:
    before = rest_totals(client)
    completed = [submit(client, {"type": "hello_world", "args": {"message": "hi"}}) for _ in "abc"]
    failing = {"type": "sleep", "args": {"seconds": "not a number"}, "max_retries": 0}
    failed = [submit(client, failing) for _ in "ab"]
    for step_id in completed:
        wait_for_status(client, step_id, "completed")
    for step_id in failed:
        wait_for_status(client, step_id, "failed")

    after = rest_totals(client)

    assert (after[0] - before[0], after[1] - before[1]) == (3, 2)
    assert grpc_totals(stub) == after


def test_throughput_lists_sixty_whole_minutes_by_default_oldest_first(
    client: httpx.Client,
) -> None:
    response = client.get("/admin/throughput")

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"minutes"}
    minutes = body["minutes"]
    assert len(minutes) == 60
    assert all(set(m) == {"minute_ts", "completed_steps", "failed_steps"} for m in minutes)
    assert_timestamp(minutes[-1]["minute_ts"])  # RFC 3339 Z, and the current minute
    starts = [datetime.fromisoformat(m["minute_ts"]) for m in minutes]
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(starts))
    assert starts[-1].second == 0 and starts[-1].microsecond == 0
    # The pod started moments ago: the hour before it finished nothing.
    assert all(m["completed_steps"] == m["failed_steps"] == 0 for m in minutes[:-10])


def test_recovery_cycles_page_newest_first_over_both_protocols(
    client: httpx.Client, stub: fleetq_pb2_grpc.FleetQServiceStub
) -> None:
    ran = []
    for _ in range(3):
        response = client.post("/admin/recovery/run", json={"force": True})
        assert response.status_code == 200, response.text
        ran.append(response.json()["recovery_summary"]["cycle_id"])
    assert client.post("/admin/recovery/run", json={"dry_run": True}).status_code == 200

    first = client.get("/admin/recovery/cycles", params={"page_size": "2"}).json()
    second = client.get(
        "/admin/recovery/cycles", params={"page_size": "2", "page_token": first["next_page_token"]}
    ).json()

    assert set(first) == {"cycles", "next_page_token"}
    listed = [c["recovery_summary"]["cycle_id"] for c in first["cycles"] + second["cycles"]]
    assert listed[:3] == ran[::-1]  # the dry run is not recorded
    newest: dict[str, Any] = first["cycles"][0]
    assert set(newest) == {
        "recovery_summary",
        "leader_pod_id",
        "trigger",
        "started_ts",
        "finished_ts",
    }
    assert newest["leader_pod_id"] == client.get("/health").json()["pod_id"]
    assert newest["trigger"] == "manual"
    assert assert_timestamp(newest["started_ts"]) <= assert_timestamp(newest["finished_ts"])
    page = stub.ListRecoveryCycles(pb.ListRecoveryCyclesRequest(page_size=3), timeout=10)
    assert [c.recovery_summary.cycle_id for c in page.cycles] == ran[::-1]


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("/admin/throughput", {"minutes": "0"}, "minutes"),
        ("/admin/throughput", {"minutes": "121"}, "minutes"),
        ("/admin/throughput", {"minutes": "-1"}, "minutes"),
        ("/admin/recovery/cycles", {"page_size": "101"}, "page_size"),
        ("/admin/recovery/cycles", {"page_size": "-1"}, "page_size"),
        ("/admin/recovery/cycles", {"page_token": "not-a-token"}, "page_token"),
    ],
)
def test_out_of_range_parameters_get_a_400_naming_them(
    client: httpx.Client, path: str, params: dict[str, str], name: str
) -> None:
    detail = assert_error(client.get(path, params=params), 400, "validation_error", path)
    assert name in detail


@pytest.mark.parametrize(
    "call",
    [
        lambda stub: stub.GetThroughput(pb.GetThroughputRequest(minutes=0), timeout=10),
        lambda stub: stub.ListRecoveryCycles(
            pb.ListRecoveryCyclesRequest(page_size=101), timeout=10
        ),
    ],
    ids=["minutes", "page_size"],
)
def test_out_of_range_parameters_are_invalid_arguments_over_grpc(
    stub: fleetq_pb2_grpc.FleetQServiceStub, call: Any
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        call(stub)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
