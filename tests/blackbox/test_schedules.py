"""Periodic schedules against real pods, over REST and gRPC: the admin routes (token
protected), the errors the issue names, ticks fired by the leader with their idempotency key,
the schedules file, and no tick fired twice while the leader is killed or frozen."""

from __future__ import annotations

import signal
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from tests.blackbox.contract import ERROR_KEYS, FAST_POD_ENV
from tests.blackbox.pods import _fetch
from tests.conftest import ServerFactory
from tests.support.databases import run_sync
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

TOKEN = "schedules-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GRPC_AUTH = (("authorization", f"Bearer {TOKEN}"),)
WAIT_S = 30


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env={**FAST_POD_ENV, "FLEETQ_ADMIN_TOKEN": TOKEN})


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _error(response: httpx.Response, status: int, field: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS
    if field is not None:
        assert body["detail"].startswith(f"{field}:"), body
    detail: str = body["detail"]
    return detail


def test_rest_routes_create_list_get_patch_pause_resume_and_delete(client: httpx.Client) -> None:
    body = {
        "name": "rest-nightly",
        "cron": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "type": "hello_world",
        "args": {"message": "hi", "n": 5},
        "overlap": "skip",
    }
    created = client.post("/admin/schedules", json=body, headers=AUTH)
    assert created.status_code == 201, created.text
    schedule = created.json()["schedule"]
    assert schedule["args"] == {"message": "hi", "n": 5}
    assert (schedule["catch_up"], schedule["max_retries"], schedule["source"]) == ("skip", 3, "api")
    assert schedule["interval_seconds"] is None and schedule["last_fire_time"] is None
    next_fire = _parse(schedule["next_fire_time"])
    assert next_fire > datetime.now(UTC)
    assert (next_fire.hour, next_fire.minute) in ((0, 30), (1, 30), (1, 0))  # 02:30 Berlin

    assert client.post("/admin/schedules", json=body, headers=AUTH).status_code == 409
    listed = client.get("/admin/schedules", headers=AUTH).json()["schedules"]
    assert "rest-nightly" in [s["name"] for s in listed]
    one = client.get("/admin/schedules/rest-nightly", headers=AUTH).json()["schedule"]
    assert one["next_fire_time"] == schedule["next_fire_time"]

    patched = client.patch(
        "/admin/schedules/rest-nightly", json={"interval_seconds": 3600}, headers=AUTH
    ).json()["schedule"]
    assert (patched["cron"], patched["interval_seconds"]) == (None, 3600)
    assert patched["args"] == body["args"]

    paused = client.post("/admin/schedules/rest-nightly:pause", json={}, headers=AUTH)
    assert paused.json()["schedule"]["paused"] is True
    assert paused.json()["schedule"]["next_fire_time"] is None
    resumed = client.post("/admin/schedules/rest-nightly:resume", json={}, headers=AUTH)
    assert _parse(resumed.json()["schedule"]["next_fire_time"]).timestamp() % 3600 == 0

    assert client.delete("/admin/schedules/rest-nightly", headers=AUTH).status_code == 200
    for response in (
        client.get("/admin/schedules/rest-nightly", headers=AUTH),
        client.delete("/admin/schedules/rest-nightly", headers=AUTH),
        client.patch("/admin/schedules/rest-nightly", json={"priority": 1}, headers=AUTH),
        client.post("/admin/schedules/rest-nightly:pause", json={}, headers=AUTH),
    ):
        _error(response, 404)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "0 0 30 2 *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"cron": None, "interval_seconds": 0}, "interval_seconds"),
        ({"name": "has space"}, "name"),
    ],
)
def test_bad_schedules_answer_400_naming_the_field_and_change_nothing(
    client: httpx.Client, changes: dict[str, Any], field: str
) -> None:
    body = {"name": "bad", "cron": "* * * * *", "type": "hello_world", **changes}
    body = {key: value for key, value in body.items() if value is not None}
    _error(client.post("/admin/schedules", json=body, headers=AUTH), 400, field)
    assert client.get("/admin/schedules/bad", headers=AUTH).status_code in (400, 404)


def test_schedule_routes_need_the_admin_token(client: httpx.Client) -> None:
    assert client.get("/admin/schedules").status_code == 401
    refused = client.post(
        "/admin/schedules", json={"name": "x", "interval_seconds": 5, "type": "hello_world"}
    )
    assert refused.status_code == 401


def test_grpc_an_interval_schedule_fires_each_tick_with_its_key(
    stub: fleetq_pb2_grpc.FleetQServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        stub.ListSchedules(pb.ListSchedulesRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    request = pb.CreateScheduleRequest(name="every-second", interval_seconds=1, type="hello_world")
    stub.CreateSchedule(request, metadata=GRPC_AUTH, timeout=10)
    with pytest.raises(grpc.RpcError) as duplicate:
        stub.CreateSchedule(request, metadata=GRPC_AUTH, timeout=10)
    assert duplicate.value.code() == grpc.StatusCode.ALREADY_EXISTS

    def fired_twice() -> pb.Schedule | None:
        reply = stub.GetSchedule(pb.GetScheduleRequest(name="every-second"), metadata=GRPC_AUTH)
        first = reply.schedule
        return first if first.HasField("last_fire_time") and first.last_step_id else None

    first = wait_until(fired_twice, timeout=WAIT_S, description="a tick to fire")
    key = stub.GetIdempotencyKey(pb.GetIdempotencyKeyRequest(step_id=first.last_step_id))
    tick = first.last_fire_time.ToDatetime(tzinfo=UTC)
    assert key.idempotency_key == f"schedule:every-second:{tick:%Y-%m-%dT%H:%M:%SZ}"
    assert first.next_fire_time.ToDatetime(tzinfo=UTC) > tick
    stub.PauseSchedule(pb.PauseScheduleRequest(name="every-second"), metadata=GRPC_AUTH)
    with pytest.raises(grpc.RpcError) as bad:
        stub.UpdateSchedule(
            pb.UpdateScheduleRequest(name="every-second", timezone="Nowhere/Else"),
            metadata=GRPC_AUTH,
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (bad.value.details() or "").startswith("timezone:")


def _schedule_keys(database_url: str, name: str) -> list[str]:
    rows = run_sync(
        lambda: _fetch(
            database_url,
            "SELECT idempotency_key FROM fleetq_steps WHERE idempotency_key LIKE $1",
            f"schedule:{name}:%",
        )
    )
    return [row["idempotency_key"] for row in rows]


def _leader(pods: list[ServerProcess]) -> ServerProcess | None:
    for candidate in pods:
        try:
            health = httpx.get(f"{candidate.http_url}/health", timeout=2).json()
        except httpx.HTTPError:
            continue
        if health.get("is_leader"):
            return candidate
    return None


def test_no_tick_fires_twice_when_the_leader_is_frozen_then_killed(
    server_factory: ServerFactory, database_url: str, tmp_path: Path
) -> None:
    """Three pods share a schedules file with an every-second schedule. The leader is frozen
    past its dead-pod threshold (another pod takes over, and the frozen one wakes up still
    believing it leads), then killed as a tick falls due; every tick's step is unique."""
    schedules = tmp_path / "schedules.toml"
    schedules.write_text(
        '[schedules.heartbeat]\ncron = "* * * * * *"\ntype = "hello_world"\n'
        'args = { message = "tick" }\ncatch_up = "once"\n'
    )
    env = {
        **FAST_POD_ENV,
        "FLEETQ_DEAD_POD_THRESHOLD": "1.5",
        "FLEETQ_HEARTBEAT_INTERVAL": "0.3",
        "FLEETQ_SCHEDULES_FILE": str(schedules),
        "FLEETQ_SCHEDULE_INTERVAL": "0.2",
        "FLEETQ_SHUTDOWN_GRACE": "0",
    }
    pods = [server_factory(env={**env, "FLEETQ_POD_ID": f"sched-{i}"}) for i in range(3)]
    first = wait_until(lambda: _leader(pods), timeout=WAIT_S, description="a leader")
    wait_until(lambda: len(_schedule_keys(database_url, "heartbeat")) >= 2, timeout=WAIT_S)

    first.send_signal(signal.SIGSTOP)
    others = [p for p in pods if p is not first]
    second = wait_until(lambda: _leader(others), timeout=WAIT_S, description="a new leader")
    count = len(_schedule_keys(database_url, "heartbeat"))
    wait_until(lambda: len(_schedule_keys(database_url, "heartbeat")) >= count + 2, timeout=WAIT_S)
    first.send_signal(signal.SIGCONT)  # wakes up thinking it leads, for a heartbeat or so
    count = len(_schedule_keys(database_url, "heartbeat"))
    wait_until(lambda: len(_schedule_keys(database_url, "heartbeat")) >= count + 2, timeout=WAIT_S)

    now = datetime.now(UTC)
    wait_until(lambda: datetime.now(UTC).microsecond > 950_000, timeout=2, interval=0.005)
    second.kill()  # just before a tick
    survivors = [p for p in pods if p is not second]
    wait_until(lambda: _leader(survivors), timeout=WAIT_S, description="a third leader")
    count = len(_schedule_keys(database_url, "heartbeat"))
    wait_until(lambda: len(_schedule_keys(database_url, "heartbeat")) >= count + 2, timeout=WAIT_S)

    # The schedule keeps firing: read its listing before its steps, so that every fire the
    # listing reports has its step among those read.
    with httpx.Client(base_url=survivors[0].http_url, timeout=10) as client:
        listed = client.get("/admin/schedules").json()["schedules"]
    keys = _schedule_keys(database_url, "heartbeat")
    assert [k for k, n in Counter(keys).items() if n > 1] == []
    ticks = sorted(_parse(key.split(":", 2)[2]) for key in keys)
    assert all(tick.microsecond == 0 for tick in ticks)
    assert ticks[-1] > now
    assert [(s["name"], s["source"]) for s in listed] == [("heartbeat", "file")]
    assert _parse(listed[0]["last_fire_time"]) <= ticks[-1]
