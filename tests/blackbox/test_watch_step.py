"""WatchStep against real pods: the current state, then each change pushed by notification
(the pods' polls are far slower than any wait here), the end at a terminal state or the
call's deadline, and the client's `watch()`/`wait()` and `fleetq watch` on top of it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc
from google.protobuf import struct_pb2

from fleetq_client import AsyncFleetQClient, FleetQClient, NotFound, StepStatus, Timeout
from tests.blackbox.contract import ERROR_KEYS, STEP_STATUS_KEYS
from tests.blackbox.test_cli_client import fleetq
from tests.blackbox.test_metrics import scrape, value
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

# Polls (claims and the watch hub's re-read) slower than any wait below: whatever a
# watcher sees in time was pushed to it.
SLOW_POLL = {"FLEETQ_HEARTBEAT_INTERVAL": "0.2", "FLEETQ_POLL_INTERVAL": "60"}
WAIT_S = 20
UNKNOWN_STEP = "step_20240101000000_0000000000000000"


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    """The pod serving the watches; it runs only the built-in step types."""
    return module_server_factory(env={**SLOW_POLL, "FLEETQ_POD_ID": "watcher"})


@pytest.fixture(scope="module")
def runner(module_server_factory: ServerFactory, pod: ServerProcess) -> ServerProcess:
    """Another pod, the only one that runs the metrics test types."""
    env = {
        **SLOW_POLL,
        "FLEETQ_POD_ID": "runner",
        "FLEETQ_HANDLERS": "tests.handlers.metrics_outcomes",
        "FLEETQ_RETRY_BACKOFF_BASE": "0.5",  # a retry's pending state lasts long enough to see
    }
    return module_server_factory(env=env)


def submit(stub: fleetq_pb2_grpc.FleetQServiceStub, step_type: str, **fields: object) -> str:
    args = struct_pb2.Struct()
    args.update(fields.pop("args", {}))  # type: ignore[arg-type]
    request = pb.SubmitStepRequest(type=step_type, args=args, **fields)  # type: ignore[arg-type]
    return str(stub.SubmitStep(request).step_id)


def watch(
    stub: fleetq_pb2_grpc.FleetQServiceStub, step_id: str, timeout: float = WAIT_S
) -> Iterator[pb.GetStepStatusResponse]:
    return stub.WatchStep(pb.WatchStepRequest(step_id=step_id), timeout=timeout)  # type: ignore[no-any-return]


def test_the_stream_is_the_current_state_then_each_change_then_ends_at_terminal(
    stub: fleetq_pb2_grpc.FleetQServiceStub,
) -> None:
    step_id = submit(stub, "sleep", args={"seconds": 0.5}, delay_seconds=1)

    states = [(s.status, s.claimed_by or None) for s in watch(stub, step_id)]

    assert states == [("pending", None), ("claimed", "watcher"), ("completed", "watcher")]


def test_a_watch_follows_a_step_run_by_another_pod_through_its_retry(
    stub: fleetq_pb2_grpc.FleetQServiceStub, runner: ServerProcess
) -> None:
    step_id = submit(stub, "metrics_flaky")

    states = list(watch(stub, step_id))

    seen = [(s.status, s.retry_count) for s in states]
    assert ("pending", 1) in seen  # the failed first execution, back in the queue
    assert seen[-1] == ("completed", 1)
    retried = states[seen.index(("pending", 1))]
    assert retried.error.type == "RuntimeError"  # why it went back to the queue
    assert all(s.claimed_by == "runner" for s in states if s.status == "claimed")


def test_a_failed_step_ends_the_stream_with_its_error(
    stub: fleetq_pb2_grpc.FleetQServiceStub, runner: ServerProcess
) -> None:
    step_id = submit(stub, "metrics_broken", max_retries=0)

    last = list(watch(stub, step_id))[-1]

    assert (last.status, last.error.type) == ("failed", "RuntimeError")


def test_the_stream_ends_at_the_deadline_and_the_pod_forgets_the_watcher(
    stub: fleetq_pb2_grpc.FleetQServiceStub, client: httpx.Client
) -> None:
    step_id = submit(stub, "hello_world", delay_seconds=3600)
    stream = watch(stub, step_id, timeout=1)

    assert next(stream).status == "pending"
    with pytest.raises(grpc.RpcError) as raised:
        next(stream)

    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(
        lambda: value(scrape(client), "fleetq_watchers") == 0,
        timeout=10,
        description="the watcher to be gone",
    )


@pytest.mark.parametrize(
    ("step_id", "code"),
    [(UNKNOWN_STEP, grpc.StatusCode.NOT_FOUND), ("", grpc.StatusCode.INVALID_ARGUMENT)],
    ids=["unknown", "empty"],
)
def test_watching_a_step_that_cannot_exist_fails_at_once(
    stub: fleetq_pb2_grpc.FleetQServiceStub, step_id: str, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        list(watch(stub, step_id))
    assert raised.value.code() == code


def test_client_wait_and_watch_follow_the_stream(pod: ServerProcess) -> None:
    seen: list[StepStatus] = []
    with FleetQClient(pod.grpc_target) as client:
        submitted = client.submit("hello_world", {"message": "w"}, delay_seconds=1)
        step = client.wait(submitted.step_id, timeout=WAIT_S, on_change=seen.append)
        watched = list(client.watch(submitted.step_id))
        with pytest.raises(NotFound):
            list(client.watch(UNKNOWN_STEP))
        later = client.submit("hello_world", {}, delay_seconds=3600)
        with pytest.raises(Timeout, match="still pending"):
            client.wait(later.step_id, timeout=0.5)

    assert seen[0].status == "pending" and seen[0].run_at is not None
    assert (seen[-1].status, step.status, step.result["greeting"]) == (
        "completed",
        "completed",
        "Hello, w",
    )
    assert [s.status for s in watched] == ["completed"]  # a finished step: one state, then the end


async def test_the_asyncio_client_watches_too(pod: ServerProcess) -> None:
    async with AsyncFleetQClient(pod.grpc_target) as client:
        submitted = await client.submit("hello_world", {}, delay_seconds=0.5)
        statuses = [step.status async for step in client.watch(submitted.step_id, WAIT_S)]
        assert (await client.wait(submitted.step_id)).status == "completed"

    assert statuses[0] == "pending" and statuses[-1] == "completed"


def test_fleetq_watch_prints_one_line_per_state(pod: ServerProcess) -> None:
    with FleetQClient(pod.grpc_target) as client:
        later = client.submit("hello_world", {}, delay_seconds=3600).step_id
        done = client.submit("hello_world", {"message": "cli"}).step_id
        client.wait(done, timeout=WAIT_S)

    pending = fleetq("watch", later, "--json", "--wait-timeout", "1", target=pod)
    finished = fleetq("watch", done, target=pod)
    unknown = fleetq("watch", UNKNOWN_STEP, target=pod)

    [line] = [json.loads(line) for line in pending.stdout.splitlines()]
    assert (line["step_id"], line["status"]) == (later, "pending") and line["run_at"]
    assert pending.returncode == 1 and "Timeout" in pending.stderr
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.startswith(f"{done}: completed, result ")
    assert '"Hello, cli"' in finished.stdout
    assert unknown.returncode == 3 and "NotFound" in unknown.stderr


def test_fleetq_submit_wait_follows_a_scheduled_step(pod: ServerProcess) -> None:
    run = fleetq("submit", "hello_world", "--delay", "1", "--wait", "--json", target=pod)

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["status"] == "completed"
    assert "pending, runs at" in run.stderr


def test_rest_watch_is_newline_delimited_result_objects_until_terminal(
    stub: fleetq_pb2_grpc.FleetQServiceStub, client: httpx.Client
) -> None:
    step_id = submit(stub, "sleep", args={"seconds": 0.5}, delay_seconds=1)

    with client.stream("GET", f"/steps/{step_id}:watch", timeout=WAIT_S) as response:
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
        lines = [json.loads(line) for line in response.iter_lines() if line]

    assert all(set(line) == {"result"} for line in lines)
    states = [line["result"] for line in lines]
    assert all(set(state) == STEP_STATUS_KEYS for state in states)
    assert [state["status"] for state in states] == ["pending", "claimed", "completed"]
    assert states[0]["run_at"] is not None and states[0]["step_id"] == step_id
    assert states[-1]["result"] == {"slept_seconds": 0.5}


def test_rest_watch_of_an_unknown_step_is_the_contract_404(client: httpx.Client) -> None:
    response = client.get(f"/steps/{UNKNOWN_STEP}:watch")

    assert response.status_code == 404
    body = response.json()
    assert set(body) == ERROR_KEYS and body["error_type"] == "not_found"
    assert UNKNOWN_STEP in body["detail"]
