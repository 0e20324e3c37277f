"""fleetq_client against real pods: every call of the sync and asyncio clients, typed results,
and each kind of failure as its exception."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from fleetq_client import (
    AsyncFleetQClient,
    Conflict,
    FleetQClient,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StepStatus,
    Timeout,
    Unauthenticated,
    Unavailable,
)
from tests.blackbox.contract import FAST_POD_ENV
from tests.blackbox.test_metrics import scrape, value
from tests.conftest import ServerFactory
from tests.support.net import free_port
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

FAST = {**FAST_POD_ENV, "FLEETQ_SHUTDOWN_GRACE": "0"}
ADMIN_TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def leader(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env={**FAST, "FLEETQ_POD_ID": "client-leader"})


@pytest.fixture(scope="module")
def follower(module_server_factory: ServerFactory, leader: ServerProcess) -> ServerProcess:
    """A younger pod whose admin calls need a token."""
    env = {**FAST, "FLEETQ_POD_ID": "client-follower", "FLEETQ_ADMIN_TOKEN": ADMIN_TOKEN}
    return module_server_factory(env=env)


@pytest.fixture
def client(leader: ServerProcess) -> Iterator[FleetQClient]:
    with FleetQClient(leader.grpc_target) as client:
        yield client


def test_submit_then_wait_returns_the_typed_result(client: FleetQClient) -> None:
    seen: list[str] = []
    submitted = client.submit("hello_world", {"message": "client", "n": 5}, metadata={"by": "t"})
    step = client.wait(submitted.step_id, timeout=15, on_change=lambda s: seen.append(s.status))
    assert submitted.status == "submitted"
    assert (step.step_id, step.status, step.type, step.finished) == (
        submitted.step_id,
        "completed",
        "hello_world",
        True,
    )
    assert step.args == {"message": "client", "n": 5} and isinstance(step.args["n"], int)
    assert step.metadata == {"by": "t"}
    assert step.result == {"greeting": "Hello, client", "step_id": submitted.step_id}
    assert step.error is None and isinstance(step.created_ts, datetime)
    assert seen[-1] == "completed" and len(seen) == len(set(seen))


def test_a_failed_step_carries_its_error(client: FleetQClient) -> None:
    submitted = client.submit("sleep", {"seconds": "soon"}, max_retries=1, priority=7)
    step = client.wait(submitted.step_id, timeout=15)
    assert (step.status, step.retry_count, step.max_retries, step.priority) == ("failed", 1, 1, 7)
    assert step.error is not None and step.error.type == "ValueError"
    assert step.result is None


def test_wait_gives_up_after_its_timeout(client: FleetQClient) -> None:
    submitted = client.submit("nobody_runs_this", {})
    with pytest.raises(Timeout, match="still pending"):
        client.wait(submitted.step_id, timeout=0.3, poll_interval=0.05)


def test_an_idempotency_key_returns_the_original_and_refuses_another_payload(
    client: FleetQClient,
) -> None:
    key = f"order-{secrets.token_hex(4)}"
    first = client.submit("hello_world", {"n": 1}, idempotency_key=key)
    assert client.submit("hello_world", {"n": 1}, idempotency_key=key).step_id == first.step_id
    with pytest.raises(Conflict):
        client.submit("hello_world", {"n": 2}, idempotency_key=key)


def test_bad_requests_and_unknown_steps_raise_their_exceptions(client: FleetQClient) -> None:
    with pytest.raises(InvalidArgument, match="type"):
        client.submit("not a type!", {})
    with pytest.raises(NotFound) as caught:
        client.status("step_20240101000000_0000000000000000")
    assert "not found" in caught.value.message


def test_admin_calls_report_the_fleet(
    client: FleetQClient, leader: ServerProcess, follower: ServerProcess
) -> None:
    stats = client.queue_stats()
    assert stats.current_leader == "client-leader" and stats.active_pods == 2
    assert set(stats.pod_capacity) == {"client-leader", "client-follower"}
    info = client.leader()
    assert info.current_leader == "client-leader" and info.leader_birth_ts is not None
    assert [(p.pod_id, p.is_leader) for p in info.eligible_pods] == [
        ("client-leader", True),
        ("client-follower", False),
    ]
    dry_run = client.recover(dry_run=True)
    assert (dry_run.status, dry_run.dead_pods) == ("dry_run", ())
    assert client.recover(force=True).status == "completed"
    health = client.health()
    assert (health.pod_id, health.healthy, health.is_leader) == ("client-leader", True, True)


def test_history_calls_report_finished_steps_and_recovery_cycles(client: FleetQClient) -> None:
    submitted = client.submit("hello_world", {"message": "counted"})
    client.wait(submitted.step_id, timeout=15)
    cycle = client.recover(force=True)

    series = client.throughput(minutes=5)
    page = client.recovery_cycles(page_size=1)

    assert len(series) == 5 and series[0].minute_ts < series[-1].minute_ts
    assert sum(m.completed_steps for m in client.throughput()) >= 1
    assert [c.cycle_id for c in page.cycles] == [cycle.cycle_id]
    assert page.cycles[0].leader_pod_id == "client-leader" and page.next_page_token
    older = client.recovery_cycles(page_size=100, page_token=page.next_page_token)
    assert cycle.cycle_id not in [c.cycle_id for c in older.cycles]
    with pytest.raises(InvalidArgument, match="minutes"):
        client.throughput(minutes=121)


def test_the_admin_token_is_sent_and_recovery_is_refused_off_the_leader(
    follower: ServerProcess,
) -> None:
    with FleetQClient(follower.grpc_target) as anonymous:
        with pytest.raises(Unauthenticated):
            anonymous.queue_stats()
        assert anonymous.health().healthy  # not an admin call
    with FleetQClient(follower.grpc_target, token=ADMIN_TOKEN) as admin:
        assert admin.queue_stats().active_pods == 2
        with pytest.raises(PermissionDenied, match="client-leader"):
            admin.recover()


def test_an_unreachable_pod_is_unavailable() -> None:
    with FleetQClient(f"127.0.0.1:{free_port()}", timeout=5) as client, pytest.raises(Unavailable):
        client.health()


async def test_the_asyncio_client_makes_the_same_calls(
    leader: ServerProcess, follower: ServerProcess
) -> None:
    async with AsyncFleetQClient(leader.grpc_target) as client:
        submitted = await client.submit("hello_world", {"message": "async"}, max_retries=0)
        step = await client.wait(submitted.step_id, timeout=15)
        assert isinstance(step, StepStatus) and step.status == "completed"
        assert (await client.status(submitted.step_id)).result == step.result
        assert (await client.queue_stats()).current_leader == "client-leader"
        assert (await client.leader()).active_pods == 2
        assert (await client.recover(dry_run=True)).status == "dry_run"
        assert len(await client.throughput(3)) == 3
        cycle = await client.recover(force=True)
        assert (await client.recovery_cycles()).cycles[0].cycle_id == cycle.cycle_id
        assert (await client.health()).is_leader
        with pytest.raises(NotFound):
            await client.status("step_20240101000000_0000000000000000")
    async with AsyncFleetQClient(follower.grpc_target, token=ADMIN_TOKEN) as admin:
        with pytest.raises(PermissionDenied):
            await admin.recover()


def test_a_batch_is_stored_whole_with_every_option_and_results_in_order(
    client: FleetQClient,
) -> None:
    key = f"batch-{secrets.token_hex(4)}"
    result = client.submit_batch(
        [
            {"type": "hello_world", "args": {}, "metadata": {}},
            {"type": "hello_world", "args": {"n": 2}, "priority": 7, "max_retries": 0},
            {"type": "hello_world", "args": {"n": 3}, "idempotency_key": key, "delay_seconds": 60},
        ]
    )
    assert result.created_count == 3
    empty, prioritised, keyed = (client.status(step.step_id) for step in result.steps)
    assert (empty.args, empty.metadata) == ({}, {})
    assert (prioritised.args, prioritised.priority, prioritised.max_retries) == ({"n": 2}, 7, 0)
    assert keyed.run_at is not None and keyed.status == "pending"
    again = client.submit_batch([{"type": "hello_world", "args": {"n": 3}, "idempotency_key": key}])
    assert (again.created_count, again.steps[0].step_id) == (0, result.steps[2].step_id)


def test_a_bad_step_refuses_its_whole_batch(client: FleetQClient) -> None:
    key = f"refused-{secrets.token_hex(4)}"
    good = {"type": "hello_world", "args": {"n": 1}, "idempotency_key": key}
    with pytest.raises(InvalidArgument, match=r"steps\[1\]\.type"):
        client.submit_batch([good, {"type": "not a type!", "args": {}}])  # type: ignore[list-item]
    # Nothing of it was stored: the key is still free for a different payload.
    fresh = client.submit("hello_world", {"n": 2}, idempotency_key=key)
    assert client.status(fresh.step_id).args == {"n": 2}


# From 64 steps an all-or-nothing batch is stored in parts of 100 while it is prepared
# (api/batch_parts.py): a refusal in a later part must still leave nothing stored.
LARGE = 700


def test_a_large_batch_with_a_bad_step_in_a_later_part_stores_nothing(
    client: FleetQClient, leader: ServerProcess
) -> None:
    step_type = f"unrun_{secrets.token_hex(4)}"  # no pod runs it: the steps stay listed
    specs = [{"type": step_type, "args": {"i": i}} for i in range(LARGE)]
    specs[LARGE - 10]["args"] = {"i": float(2**60)}  # too large to keep exact
    with httpx.Client(base_url=leader.http_url) as http:
        with pytest.raises(InvalidArgument, match=rf"steps\[{LARGE - 10}\]\.args"):
            client.submit_batch(specs)  # type: ignore[arg-type]
        assert not client.list_steps(type=step_type).steps
        # Counted once stored (the answer of a copied batch is written before its commit).
        submitted = "fleetq_steps_submitted_total"
        assert value(scrape(http), submitted, step_type=step_type) == 0
        stored = client.submit_batch(specs[:-10])  # type: ignore[arg-type]
        assert value(scrape(http), submitted, step_type=step_type) == LARGE - 10
    assert stored.created_count == LARGE - 10
    assert [step.message for step in stored.steps[:1]] == [
        f"Step {stored.steps[0].step_id} submitted successfully"
    ]
    assert [client.status(r.step_id).args["i"] for r in stored.steps[::99]] == list(
        range(0, LARGE - 10, 99)
    )


def test_a_large_batch_with_an_idempotency_key_in_a_later_part_is_deduplicated(
    client: FleetQClient,
) -> None:
    key = f"large-{secrets.token_hex(4)}"
    first = client.submit("hello_world", {"n": 1}, idempotency_key=key)
    specs: list[dict[str, object]] = [
        {"type": "hello_world", "args": {"i": i}} for i in range(LARGE)
    ]
    specs[LARGE - 1] = {"type": "hello_world", "args": {"n": 1}, "idempotency_key": key}
    result = client.submit_batch(specs)  # type: ignore[arg-type]
    assert result.created_count == LARGE - 1
    assert result.steps[-1].step_id == first.step_id
    specs[LARGE - 1] = {"type": "hello_world", "args": {"n": 2}, "idempotency_key": key}
    with pytest.raises(Conflict):
        client.submit_batch(specs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("chunk_size", "in_flight"), [(7, 1), (10, 3), (1000, 4)])
def test_submit_many_pipelines_chunks_and_keeps_the_order(
    client: FleetQClient, chunk_size: int, in_flight: int
) -> None:
    tag = secrets.token_hex(4)
    specs = ({"type": "hello_world", "args": {"tag": tag, "i": i}} for i in range(45))
    results = client.submit_many(specs, chunk_size=chunk_size, in_flight=in_flight)
    assert len({r.step_id for r in results}) == 45
    assert [client.status(r.step_id).args["i"] for r in results] == list(range(45))


def test_submit_many_keeps_each_call_within_the_bytes_a_pod_reads(client: FleetQClient) -> None:
    tag = secrets.token_hex(4)
    bulky = "x" * 20_000  # 60 such steps exceed the pod's 1 MiB in one request
    specs = ({"type": "hello_world", "args": {"tag": tag, "i": i, "pad": bulky}} for i in range(60))
    results = client.submit_many(specs)
    assert [client.status(r.step_id).args["i"] for r in results] == list(range(60))


async def test_the_asyncio_submit_many_sends_a_chunk_before_it_builds_the_next(
    leader: ServerProcess, client: FleetQClient
) -> None:
    step_type = f"unrun_{secrets.token_hex(4)}"  # no pod runs it: the steps stay listed

    def stored() -> int:
        return len(client.list_steps(type=step_type).steps)

    def steps() -> Iterator[dict[str, object]]:
        yield from ({"type": step_type, "args": {"i": i}} for i in range(4))
        # Asked for the second chunk: the first must be on its way already, so the pod
        # stores it while this generator holds the client's event loop.
        wait_until(lambda: stored() == 4, timeout=10, description="the first chunk stored")
        yield from ({"type": step_type, "args": {"i": i}} for i in range(4, 8))

    async with AsyncFleetQClient(leader.grpc_target) as aio:
        results = await aio.submit_many(steps(), chunk_size=4, in_flight=2)  # type: ignore[arg-type]
    assert [client.status(r.step_id).args["i"] for r in results] == list(range(8))


async def test_the_asyncio_submit_many_stops_at_the_first_refused_chunk(
    leader: ServerProcess,
) -> None:
    tag = secrets.token_hex(4)
    specs = [{"type": "hello_world", "args": {"tag": tag, "i": i}} for i in range(20)]
    specs[12]["type"] = "not a type!"
    async with AsyncFleetQClient(leader.grpc_target) as client:
        stored = await client.submit_many(specs[:10], chunk_size=4, in_flight=2)  # type: ignore[arg-type]
        assert [(await client.status(r.step_id)).args["i"] for r in stored] == list(range(10))
        with pytest.raises(InvalidArgument, match=r"steps\[2\]\.type"):
            await client.submit_many(specs, chunk_size=5, in_flight=1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="chunk_size"):
            await client.submit_many(specs, chunk_size=1001)  # type: ignore[arg-type]
