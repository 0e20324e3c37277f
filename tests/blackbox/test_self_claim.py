"""A submit claimed by the pod that received it, in the insert's own transaction, against
real pods: the step runs there when a slot is free, an older step of higher or equal
priority still goes first, a burst of single submits never runs more than the capacity,
and a fleet-wide type limit holds across pods taking single submits at once."""

from __future__ import annotations

import concurrent.futures
import time

import httpx

from tests.blackbox.contract import FAST_POD_ENV, submit, wait_for_status
from tests.blackbox.pods import POD_ENV, create_tables, executions
from tests.blackbox.test_type_limits import _sample_claimed
from tests.conftest import ServerFactory
from tests.support.databases import run_sync

SINGLE_SLOT = {"FLEETQ_MAX_PARALLELISM": "1", "FLEETQ_CAPACITY_THRESHOLD": "1"}


def test_a_step_submitted_to_a_pod_with_a_free_slot_runs_on_that_pod(
    server_factory: ServerFactory, database_url: str
) -> None:
    create_tables(database_url)
    # Long polls: should a submit take the ordinary path (the insert commits, then the claim),
    # a polling pod could take the step in between; with them, only a NOTIFY wakes a pod.
    env = {**POD_ENV, "FLEETQ_POLL_INTERVAL": "60"}
    pods = [server_factory(env={**env, "FLEETQ_POD_ID": f"self-{i}"}) for i in range(2)]
    for pod in pods:
        with httpx.Client(base_url=pod.http_url, timeout=10) as client:
            pod_id = client.get("/health").json()["pod_id"]
            for _ in range(5):  # without the self-claim, either idle pod could win each one
                step_id = submit(client, {"type": "record", "args": {}})
                assert wait_for_status(client, step_id, "completed")["claimed_by"] == pod_id


def test_an_older_step_of_equal_priority_is_not_overtaken_by_a_new_one(
    server_factory: ServerFactory, database_url: str
) -> None:
    create_tables(database_url)
    # A long poll: only a submit or a freed slot makes this pod claim.
    pod = server_factory(env={**POD_ENV, **SINGLE_SLOT, "FLEETQ_POLL_INTERVAL": "60"})
    with httpx.Client(base_url=pod.http_url, timeout=10) as client:
        assert client.put("/admin/limits/record", json={"max_concurrency": 0}).is_success
        older = submit(client, {"type": "record", "args": {}, "priority": 5})
        assert client.get(f"/status/{older}").json()["status"] == "pending"
        assert client.delete("/admin/limits/record").is_success
        # The pod's one slot is free and `older` is claimable: the new step's claim must
        # take `older`, and the new one waits for the slot.
        newer = submit(client, {"type": "record", "args": {}, "priority": 5})
        for step_id in (older, newer):
            wait_for_status(client, step_id, "completed")
    assert [run["step_id"] for run in executions(database_url, [older, newer])] == [older, newer]


def test_a_burst_of_single_submits_never_runs_more_than_the_capacity(
    server_factory: ServerFactory, database_url: str
) -> None:
    create_tables(database_url)
    pod = server_factory(
        env={**POD_ENV, "FLEETQ_MAX_PARALLELISM": "2", "FLEETQ_CAPACITY_THRESHOLD": "1"}
    )
    with httpx.Client(base_url=pod.http_url, timeout=30) as client:
        assert client.get("/health").json()["max_capacity"] == 2

        def one(n: int) -> str:
            return submit(client, {"type": "record", "args": {"n": n}})

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            step_ids = list(pool.map(one, range(60)))
        for step_id in step_ids:
            wait_for_status(client, step_id, "completed")
    runs = executions(database_url, step_ids)
    assert sorted(run["step_id"] for run in runs) == sorted(step_ids), "each exactly once"
    assert max(run["running"] for run in runs) <= 2


def test_single_submits_to_two_pods_at_once_never_exceed_a_type_limit(
    server_factory: ServerFactory, database_url: str
) -> None:
    pods = [server_factory(env={**FAST_POD_ENV, "FLEETQ_POD_ID": f"lim-{i}"}) for i in range(2)]
    clients = [httpx.Client(base_url=pod.http_url, timeout=30) for pod in pods]
    try:
        assert clients[0].put("/admin/limits/sleep", json={"max_concurrency": 2}).is_success

        def one(n: int) -> str:
            return submit(clients[n % 2], {"type": "sleep", "args": {"seconds": 0.05}})

        with concurrent.futures.ThreadPoolExecutor(9) as pool:
            samples = pool.submit(
                run_sync,
                lambda: _sample_claimed(database_url, "sleep", time.monotonic() + 60),
            )
            step_ids = list(pool.map(one, range(40)))
            counts = samples.result(timeout=90)
        for step_id in step_ids:
            wait_for_status(clients[0], step_id, "completed")
    finally:
        for client in clients:
            client.close()
    assert max(counts) == 2, f"max claimed {max(counts)} over {len(counts)} samples"
