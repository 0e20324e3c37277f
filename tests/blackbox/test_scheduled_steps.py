"""Scheduled submits (run_at, delay_seconds) against real pods over both protocols: never
claimed early, started when due without waiting for a poll, reported by GetStepStatus,
refused when out of bounds, counted in /metrics, and kept across a pod restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc
from google.protobuf import struct_pb2

from tests.blackbox.contract import ERROR_KEYS, assert_timestamp
from tests.blackbox.test_metrics import scrape, value
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess

# A poll far longer than any wait below: a scheduled step that starts on time was woken
# by its due time, not found by the poll.
SLOW_POLL = {
    "FLEETQ_HEARTBEAT_INTERVAL": "0.2",
    "FLEETQ_POLL_INTERVAL": "60",
    "FLEETQ_SHUTDOWN_GRACE": "0",
}
WAIT_S = 20


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env={**SLOW_POLL, "FLEETQ_POD_ID": "scheduler"})


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _watch_to_the_end(target: str, step_id: str) -> list[pb.GetStepStatusResponse]:
    with grpc.insecure_channel(target) as channel:
        stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
        return list(stub.WatchStep(pb.WatchStepRequest(step_id=step_id), timeout=WAIT_S))


def test_a_delayed_step_waits_for_its_time_then_starts_without_a_poll(
    stub: fleetq_pb2_grpc.FleetQServiceStub, pod: ServerProcess
) -> None:
    args = struct_pb2.Struct()
    args.update({"seconds": 0.5})  # long enough for the watch to see it claimed
    submitted = stub.SubmitStep(pb.SubmitStepRequest(type="sleep", args=args, delay_seconds=1.5))

    states = _watch_to_the_end(pod.grpc_target, submitted.step_id)

    first, claimed = states[0], next(s for s in states if s.status == "claimed")
    assert first.status == "pending" and first.HasField("run_at")
    run_at = first.run_at.ToDatetime(tzinfo=UTC)
    assert run_at - first.created_ts.ToDatetime(tzinfo=UTC) == timedelta(seconds=1.5)
    # Both times come from the database clock: claimed no earlier than due.
    assert claimed.last_update_ts.ToDatetime(tzinfo=UTC) >= run_at
    assert states[-1].status == "completed"
    assert states[-1].run_at == first.run_at


def test_rest_submits_with_run_at_show_it_in_status_and_in_batches(
    client: httpx.Client,
) -> None:
    run_at = datetime.now(UTC) + timedelta(days=30)
    stamp = run_at.isoformat().replace("+00:00", "Z")

    single = client.post("/submit", json={"type": "hello_world", "args": {}, "run_at": stamp})
    batch = client.post(
        "/submit/batch",
        json={
            "steps": [
                {"type": "hello_world", "args": {}, "delay_seconds": 3600},
                {"type": "hello_world", "args": {}},
            ]
        },
    )

    assert single.status_code == 201, single.text
    status = client.get(f"/status/{single.json()['step_id']}").json()
    assert (status["status"], _parse(status["run_at"])) == ("pending", run_at)
    assert batch.status_code == 201, batch.text
    delayed, immediate = (
        client.get(f"/status/{step['step_id']}").json() for step in batch.json()["steps"]
    )
    assert delayed["status"] == "pending"
    assert _parse(delayed["run_at"]) - assert_timestamp(delayed["created_ts"]) == timedelta(hours=1)
    assert immediate["run_at"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"run_at": "2999-01-01T00:00:00Z"}, "run_at"),
        ({"delay_seconds": -1}, "delay_seconds"),
        ({"delay_seconds": 400 * 86400}, "delay_seconds"),
        ({"run_at": "2030-01-01T00:00:00Z", "delay_seconds": 5}, "run_at"),
        ({"run_at": "tomorrow"}, "run_at"),
    ],
    ids=["run-at-beyond-a-year", "negative-delay", "delay-beyond-a-year", "both", "not-a-time"],
)
def test_bad_schedules_get_400_naming_the_field_and_write_nothing(
    client: httpx.Client, body: dict[str, object], field: str
) -> None:
    before = client.get("/admin/queue").json()["pending_steps"]

    single = client.post("/submit", json={"type": "hello_world", "args": {}, **body})
    batch = client.post(
        "/submit/batch",
        json={"steps": [{"type": "hello_world", "args": {}}, {"type": "t", "args": {}, **body}]},
    )

    assert single.status_code == 400, single.text
    assert set(single.json()) == ERROR_KEYS and field in single.json()["detail"]
    assert batch.status_code == 400, batch.text
    assert field in batch.json()["detail"] and "steps[1]" in batch.json()["detail"]
    assert client.get("/admin/queue").json()["pending_steps"] == before


def test_a_negative_delay_over_grpc_is_invalid_argument(
    stub: fleetq_pb2_grpc.FleetQServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.SubmitStep(
            pb.SubmitStepRequest(type="hello_world", args=struct_pb2.Struct(), delay_seconds=-0.5)
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "delay_seconds" in (raised.value.details() or "")


def test_scheduled_submits_are_counted_in_metrics(client: httpx.Client) -> None:
    before = scrape(client)

    client.post("/submit", json={"type": "hello_world", "args": {}, "delay_seconds": 600})
    client.post("/submit", json={"type": "hello_world", "args": {}})

    after = scrape(client)
    name, labels = "fleetq_steps_scheduled_total", {"step_type": "hello_world"}
    assert value(after, name, **labels) - value(before, name, **labels) == 1
    submitted = "fleetq_steps_submitted_total"
    assert value(after, submitted, **labels) - value(before, submitted, **labels) == 2


def test_a_scheduled_step_survives_a_pod_restart(server_factory: ServerFactory) -> None:
    first = server_factory(env={**SLOW_POLL, "FLEETQ_POD_ID": "before-restart"})
    with httpx.Client(base_url=first.http_url, timeout=10) as client:
        response = client.post(
            "/submit", json={"type": "hello_world", "args": {}, "delay_seconds": 3}
        )
        assert response.status_code == 201, response.text
        step_id = response.json()["step_id"]
        assert client.get(f"/status/{step_id}").json()["status"] == "pending"
    first.stop()

    second = server_factory(env={**SLOW_POLL, "FLEETQ_POD_ID": "after-restart"})
    states = _watch_to_the_end(second.grpc_target, step_id)

    assert states[-1].status == "completed" and states[-1].HasField("run_at")
    assert states[-1].result.struct_value.fields["step_id"].string_value == step_id
    finished, run_at = states[-1].last_update_ts, states[-1].run_at
    assert finished.ToDatetime(tzinfo=UTC) >= run_at.ToDatetime(tzinfo=UTC)
