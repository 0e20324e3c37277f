"""Workers outside the pods, against a real pod: leased claims over gRPC (generated stubs)
and REST (httpx), fencing by attempt (409 / ABORTED, 404 / NOT_FOUND), long polls woken
by submits (the pod's own poll is far slower than any wait here), lease expiry by the
leader, /admin/queue's workers, and the worker token."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc
from google.protobuf import struct_pb2

from fleetq_client import AsyncFleetQClient, Conflict, FleetQClient
from tests.blackbox.contract import ERROR_KEYS
from tests.blackbox.test_cli_client import fleetq as fleetq_command
from tests.blackbox.test_metrics import scrape, value
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

# Claim polls far slower than any wait below: a long poll that returns in time was woken
# by the submit's NOTIFY. The leader looks for ended leases every second (its recovery
# interval), and the moment the earliest one it knows of ends.
POD_ENV = {
    "FLEETQ_POD_ID": "serving",
    "FLEETQ_HEARTBEAT_INTERVAL": "0.2",
    "FLEETQ_DEAD_POD_THRESHOLD": "1",
    "FLEETQ_POLL_INTERVAL": "60",
    "FLEETQ_RECOVERY_INTERVAL": "1",
    "FLEETQ_RETRY_BACKOFF_BASE": "0",
    "FLEETQ_RETRY_BACKOFF_MAX": "0",
}
WAIT_S = 20
UNKNOWN_STEP = "step_20240101000000_0000000000000000"


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    """A pod that runs no step type itself: every step here is a remote worker's."""
    return module_server_factory(env=POD_ENV, demo_handlers=False)


def submit(client: httpx.Client, step_type: str, **fields: object) -> str:
    body = {"type": step_type, "args": fields.pop("args", {"n": 1}), **fields}
    response = client.post("/submit", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["step_id"])


def status(client: httpx.Client, step_id: str) -> dict[str, object]:
    response = client.get(f"/status/{step_id}")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def claim_rest(client: httpx.Client, step_type: str, **fields: object) -> list[dict[str, object]]:
    body = {"worker_id": "rest-worker", "types": [step_type], **fields}
    response = client.post("/workers/claim", json=body, timeout=40)
    assert response.status_code == 200, response.text
    steps: list[dict[str, object]] = response.json()["steps"]
    return steps


def claim_grpc(
    stub: fleetq_pb2_grpc.FleetQServiceStub, step_type: str, **fields: object
) -> list[pb.LeasedStep]:
    request = pb.ClaimStepsRequest(worker_id="grpc-worker", types=[step_type], **fields)  # type: ignore[arg-type]
    return list(stub.ClaimSteps(request, timeout=40).steps)


def wait_for_long_polls(client: httpx.Client, count: int) -> None:
    """Until the pod has `count` ClaimSteps calls asleep, waiting for work."""
    wait_until(
        lambda: value(scrape(client), "fleetq_claim_long_polls") == count,
        timeout=WAIT_S,
        description=f"{count} long polls",
    )


def result_value(data: object) -> struct_pb2.Value:
    value_ = struct_pb2.Value()
    value_.struct_value.update(data)  # type: ignore[arg-type]
    return value_


# ------------------------------------------------------------------------------- gRPC


def test_a_grpc_worker_claims_completes_and_is_fenced(
    client: httpx.Client, stub: fleetq_pb2_grpc.FleetQServiceStub
) -> None:
    first = submit(client, "grpc_job", args={"n": 2}, priority=5)
    second = submit(client, "grpc_job", args={"n": 3})

    leased = claim_grpc(stub, "grpc_job", max_steps=10, lease_seconds=60)

    assert [s.step_id for s in leased] == [first, second]
    step = leased[0]
    assert (step.type, step.attempt, step.retry_count, step.max_retries) == ("grpc_job", 1, 0, 3)
    assert dict(step.args) == {"n": 2} and step.idempotency_key
    assert step.lease_expires_at.seconds > time.time() + 30
    assert status(client, first)["claimed_by"] == "grpc-worker"

    done = stub.CompleteStep(
        pb.CompleteStepRequest(step_id=first, attempt=1, result=result_value({"sum": 4}))
    )
    assert (done.step_id, done.status) == (first, "completed")
    assert status(client, first)["result"] == {"sum": 4}

    with pytest.raises(grpc.RpcError) as again:
        stub.CompleteStep(pb.CompleteStepRequest(step_id=first, attempt=1))
    assert again.value.code() == grpc.StatusCode.ABORTED
    assert "already ended" in (again.value.details() or "")
    with pytest.raises(grpc.RpcError) as stale:
        stub.ExtendLease(pb.ExtendLeaseRequest(step_id=second, attempt=7))
    assert stale.value.code() == grpc.StatusCode.ABORTED
    assert "stale" in (stale.value.details() or "")
    with pytest.raises(grpc.RpcError) as unknown:
        stub.FailStep(pb.FailStepRequest(step_id=UNKNOWN_STEP, attempt=1))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

    failed = stub.FailStep(
        pb.FailStepRequest(
            step_id=second,
            attempt=1,
            error=pb.StepError(type="ValueError", message="bad n"),
            retryable=False,
        )
    )
    assert (failed.status, failed.retry_count) == ("failed", 0)
    assert status(client, second)["error"] == {"type": "ValueError", "message": "bad n"}


def test_a_grpc_long_poll_is_woken_by_a_submit(
    client: httpx.Client, stub: fleetq_pb2_grpc.FleetQServiceStub
) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(claim_grpc, stub, "poll_job", wait_seconds=25)
        wait_for_long_polls(client, 1)
        started = time.monotonic()
        step_id = submit(client, "poll_job")
        leased = waiting.result(timeout=WAIT_S)
    assert [s.step_id for s in leased] == [step_id]
    assert time.monotonic() - started < 10  # the pod polls every 60 s: the NOTIFY woke it


def test_a_long_poll_with_nothing_to_claim_answers_empty_at_its_wait(
    stub: fleetq_pb2_grpc.FleetQServiceStub,
) -> None:
    started = time.monotonic()
    assert claim_grpc(stub, "never_submitted", wait_seconds=0.5) == []
    assert 0.4 < time.monotonic() - started < 10


def test_a_cancelled_long_poll_leaves_the_step_to_others(
    client: httpx.Client, stub: fleetq_pb2_grpc.FleetQServiceStub
) -> None:
    request = pb.ClaimStepsRequest(worker_id="leaver", types=["cancel_job"], wait_seconds=25)
    call = stub.ClaimSteps.future(request, timeout=40)
    wait_for_long_polls(client, 1)
    call.cancel()
    step_id = submit(client, "cancel_job")

    leased = wait_until(
        lambda: claim_grpc(stub, "cancel_job"), timeout=WAIT_S, description="the step"
    )

    assert leased[0].step_id == step_id
    assert leased[0].retry_count == 0  # a release, if the leaver's claim took it first


def test_a_deadline_shorter_than_the_wait_is_answered_before_it(
    stub: fleetq_pb2_grpc.FleetQServiceStub,
) -> None:
    request = pb.ClaimStepsRequest(worker_id="hurried", types=["late_job"], wait_seconds=30)
    response = stub.ClaimSteps(request, timeout=2)
    assert list(response.steps) == []


def test_bad_claims_are_refused_naming_the_field(
    stub: fleetq_pb2_grpc.FleetQServiceStub, client: httpx.Client
) -> None:
    cases = [
        ({"worker_id": "", "types": ["a"]}, "worker_id"),
        ({"worker_id": "w", "types": []}, "types"),
        ({"worker_id": "w", "types": ["a b"]}, "types[0].type"),
        ({"worker_id": "w", "types": ["a"], "max_steps": 101}, "max_steps"),
        ({"worker_id": "w", "types": ["a"], "wait_seconds": 31}, "wait_seconds"),
        ({"worker_id": "w", "types": ["a"], "lease_seconds": 1}, "lease_seconds"),
    ]
    for body, field in cases:
        with pytest.raises(grpc.RpcError) as refused:
            stub.ClaimSteps(pb.ClaimStepsRequest(**body))  # type: ignore[arg-type]
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (refused.value.details() or "").startswith(field)
        response = client.post("/workers/claim", json=body)
        assert response.status_code == 400 and response.json()["detail"].startswith(field)


# ------------------------------------------------------------------------------- REST


def test_a_rest_worker_claims_extends_fails_and_completes(client: httpx.Client) -> None:
    step_id = submit(client, "rest_job", max_retries=1)

    [step] = claim_rest(client, "rest_job", lease_seconds=30)
    assert set(step) == {
        "step_id",
        "attempt",
        "type",
        "args",
        "metadata",
        "idempotency_key",
        "retry_count",
        "max_retries",
        "lease_expires_at",
    }
    assert (step["step_id"], step["attempt"], step["args"]) == (step_id, 1, {"n": 1})

    extended = client.post(f"/steps/{step_id}:heartbeat", json={"attempt": 1, "lease_seconds": 600})
    assert extended.status_code == 200, extended.text
    assert extended.json()["lease_expires_at"] > step["lease_expires_at"]
    assert extended.json()["cancel_requested"] is False

    failed = client.post(
        f"/steps/{step_id}:fail", json={"attempt": 1, "error": {"type": "Flaky", "message": "x"}}
    )
    assert failed.status_code == 200, failed.text
    assert failed.json() == {"step_id": step_id, "status": "pending", "retry_count": 1}

    [again] = claim_rest(client, "rest_job")
    assert (again["attempt"], again["retry_count"]) == (2, 1)
    stale = client.post(f"/steps/{step_id}:complete", json={"attempt": 1, "result": 1})
    assert stale.status_code == 409
    assert set(stale.json()) == ERROR_KEYS and stale.json()["error_type"] == "conflict"
    assert "stale" in stale.json()["detail"]

    done = client.post(f"/steps/{step_id}:complete", json={"attempt": 2, "result": [1, "a"]})
    assert done.status_code == 200, done.text
    assert status(client, step_id)["result"] == [1, "a"]
    missing = client.post(f"/steps/{UNKNOWN_STEP}:complete", json={"attempt": 1})
    assert missing.status_code == 404 and missing.json()["error_type"] == "not_found"


def test_a_cancelled_leased_step_is_told_by_its_heartbeat_and_ends_cancelled(
    client: httpx.Client,
) -> None:
    step_id = submit(client, "cancel_leased_job")
    [step] = claim_rest(client, "cancel_leased_job", lease_seconds=30)
    cancelled = client.post(f"/steps/{step_id}:cancel", json={})
    assert cancelled.status_code == 200, cancelled.text
    heartbeat = client.post(f"/steps/{step_id}:heartbeat", json={"attempt": step["attempt"]})
    assert heartbeat.status_code == 200, heartbeat.text
    assert heartbeat.json()["cancel_requested"] is True
    done = client.post(f"/steps/{step_id}:complete", json={"attempt": step["attempt"]})
    assert done.status_code == 200 and done.json()["status"] == "cancelled"
    final = status(client, step_id)
    assert final["status"] == "cancelled"
    [attempt] = final["attempts"]  # type: ignore[misc]
    assert (attempt["pod_id"], attempt["outcome"]) == ("rest-worker", "cancelled")


def test_leased_attempts_are_recorded_and_leases_respect_type_limits(
    client: httpx.Client,
) -> None:
    put = client.put("/admin/limits/limited_lease_job", json={"max_concurrency": 1})
    assert put.status_code == 200, put.text
    first_id, second_id = (submit(client, "limited_lease_job") for _ in range(2))
    [held] = claim_rest(client, "limited_lease_job", max_steps=10)
    assert held["step_id"] == first_id  # the limit of 1 leaves no room for the second
    assert claim_rest(client, "limited_lease_job", max_steps=10) == []
    released = client.post(f"/steps/{first_id}:release", json={"attempt": held["attempt"]})
    assert released.status_code == 200, released.text
    [again] = claim_rest(client, "limited_lease_job", max_steps=10)
    assert again["step_id"] == first_id and again["attempt"] == held["attempt"] + 1
    done = client.post(f"/steps/{first_id}:complete", json={"attempt": again["attempt"]})
    assert done.status_code == 200, done.text
    outcomes = [a["outcome"] for a in status(client, first_id)["attempts"]]  # type: ignore[attr-defined]
    assert outcomes == ["released", "completed"]
    [last] = claim_rest(client, "limited_lease_job", max_steps=10)
    assert last["step_id"] == second_id


def test_a_released_step_goes_back_without_spending_a_retry(client: httpx.Client) -> None:
    step_id = submit(client, "release_job")
    [step] = claim_rest(client, "release_job")

    released = client.post(f"/steps/{step_id}:release", json={"attempt": step["attempt"]})

    assert released.json() == {"step_id": step_id, "status": "pending"}
    again = client.post(f"/steps/{step_id}:release", json={"attempt": step["attempt"]})
    assert again.status_code == 409
    [next_claim] = claim_rest(client, "release_job")
    assert (next_claim["attempt"], next_claim["retry_count"]) == (2, 0)


def test_complete_steps_answers_each_result_on_its_own(client: httpx.Client) -> None:
    ids = [submit(client, "batch_job", args={"n": n}) for n in range(3)]
    leased = claim_rest(client, "batch_job", max_steps=100)
    attempts = {s["step_id"]: s["attempt"] for s in leased}
    completions = [{"step_id": i, "attempt": attempts[i], "result": {"i": i}} for i in ids]
    completions.append({"step_id": ids[0], "attempt": 99, "result": None})
    completions.append({"step_id": UNKNOWN_STEP, "attempt": 1})

    response = client.post("/steps:batchComplete", json={"completions": completions})

    assert response.status_code == 200, response.text
    outcomes = response.json()["outcomes"]
    assert [o["status"] for o in outcomes] == ["completed"] * 3 + ["conflict", "not_found"]
    assert "stale" in outcomes[3]["detail"]
    assert all(status(client, i)["status"] == "completed" for i in ids)


def test_a_worker_paused_past_its_lease_is_refused_and_the_step_requeued(
    client: httpx.Client,
) -> None:
    step_id = submit(client, "paused_job")
    [step] = claim_rest(client, "paused_job", lease_seconds=5)

    requeued = wait_until(
        lambda: status(client, step_id)["status"] == "pending" and status(client, step_id),
        timeout=WAIT_S,
        description="the leader to requeue the expired lease",
    )

    assert requeued["retry_count"] == 1
    assert requeued["error"]["type"] == "lease_expired"  # type: ignore[index]
    late = client.post(f"/steps/{step_id}:complete", json={"attempt": step["attempt"]})
    assert late.status_code == 409 and "already ended" in late.json()["detail"]
    [again] = claim_rest(client, "paused_job")
    assert again["attempt"] == 2


def test_admin_queue_lists_workers_and_metrics_count_remote_work(
    pod: ServerProcess, client: httpx.Client
) -> None:
    submit(client, "roster_job")
    [step] = claim_rest(client, "roster_job")

    workers = client.get("/admin/queue").json()["workers"]

    [worker] = [w for w in workers if w["worker_id"] == "rest-worker"]
    assert "roster_job" in worker["types"] and worker["in_flight"] >= 1
    assert worker["last_seen"].endswith("Z")
    with FleetQClient(pod.grpc_target) as fleetq:
        [seen] = [w for w in fleetq.queue_stats().workers if w.worker_id == "rest-worker"]
    assert seen.types == ("roster_job",) and seen.in_flight >= 1
    table = fleetq_command("queue", target=pod)
    assert table.returncode == 0 and "WORKER" in table.stdout and "rest-worker" in table.stdout
    client.post(f"/steps/{step['step_id']}:complete", json={"attempt": step["attempt"]})
    metrics = scrape(client)
    assert value(metrics, "fleetq_remote_steps_claimed_total", step_type="roster_job") == 1
    assert value(metrics, "fleetq_remote_step_outcomes_total", outcome="completed") >= 1


# ------------------------------------------------------------------------------- token


def test_the_worker_token_guards_only_the_worker_rpcs(server_factory: ServerFactory) -> None:
    pod = server_factory(
        env={"FLEETQ_WORKER_TOKEN": "w-secret", "FLEETQ_ADMIN_TOKEN": "a-secret"},
        demo_handlers=False,
    )
    with httpx.Client(base_url=pod.http_url, timeout=10) as client:
        body = {"worker_id": "w", "types": ["t"]}
        refused = client.post("/workers/claim", json=body)
        assert refused.status_code == 401
        assert "worker token" in refused.json()["detail"]
        wrong = client.post("/workers/claim", json=body, headers=bearer("a-wrong"))
        assert wrong.status_code == 401
        for token in ("w-secret", "a-secret"):
            assert (
                client.post("/workers/claim", json=body, headers=bearer(token)).status_code == 200
            )
        assert client.post("/submit", json={"type": "t", "args": {}}).status_code == 201
        assert client.get("/admin/queue", headers=bearer("w-secret")).status_code == 401


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------------------------- client


def test_the_python_client_leases_and_reports(pod: ServerProcess, client: httpx.Client) -> None:
    ids = [submit(client, "client_job", args={"n": n}) for n in range(3)]
    with FleetQClient(pod.grpc_target) as fleetq:
        leased = fleetq.claim_steps("py-worker", ["client_job"], max_steps=10, lease_seconds=5)
        assert [s.step_id for s in leased] == ids
        first, second, third = leased
        assert first.args == {"n": 0} and first.lease_expires_at.tzinfo is not None
        lease = fleetq.extend_lease(first.step_id, first.attempt, 600)
        assert lease.lease_expires_at > first.lease_expires_at
        assert lease.cancel_requested is False
        assert fleetq.complete_step(first.step_id, first.attempt, {"ok": True}) == "completed"
        with pytest.raises(Conflict):
            fleetq.complete_step(first.step_id, first.attempt)
        assert fleetq.fail_step(second.step_id, second.attempt, "E", "m") == "pending"
        assert fleetq.release_step(third.step_id, third.attempt) == "pending"
        again = fleetq.claim_steps("py-worker", ["client_job"], max_steps=10, wait_seconds=1)
        outcomes = fleetq.complete_steps([(s.step_id, s.attempt, s.args) for s in again])
    assert sorted(o.status for o in outcomes) == ["completed", "completed"]
    assert status(client, third.step_id)["result"] == {"n": 2}
    assert status(client, first.step_id)["result"] == {"ok": True}


async def test_the_asyncio_client_long_polls(pod: ServerProcess, client: httpx.Client) -> None:
    async with AsyncFleetQClient(pod.grpc_target, timeout=5) as fleetq:
        # The long poll outlasts the client's 5 s call timeout: the wait is added to it.
        polling = asyncio.ensure_future(
            fleetq.claim_steps("aio-worker", ["aio_job"], wait_seconds=8)
        )
        await asyncio.to_thread(wait_for_long_polls, client, 1)
        step_id = await asyncio.to_thread(submit, client, "aio_job")
        [step] = await polling
        assert await fleetq.complete_step(step.step_id, step.attempt, [1]) == "completed"
    assert step.step_id == step_id
