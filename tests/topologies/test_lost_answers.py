"""A claim and an outcome write that commit while their answer is lost, on a real server.

What a primary crash does by chance (tests/topologies/test_primary_failover.py), this does
on purpose: with `synchronous_standby_names` naming a standby that does not exist, every
commit is durable locally and then waits for it; terminating the waiting backend keeps the
commit and cuts the answer (PostgreSQL: "the transaction has already committed locally").
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import ServerFactory
from tests.faults.fault_handlers import HOLD_STEP_TYPE
from tests.faults.fleet import (
    REQUEST_TIMEOUT_S,
    fleet_env,
    metric_total,
    step_status,
    submit_gated,
    wait_all_claimed,
    wait_all_finished,
)
from tests.support.databases import run_sync
from tests.support.server_process import ServerProcess
from tests.support.topologies import PostgresNode, scratch_dir
from tests.support.waiting import wait_until

# The pod's own heartbeat and recovery stay out of the way: only the statement under test
# commits while commits wait. Claims wait for their flush too (and so for the standby), as
# with FLEETQ_DURABLE_CLAIMS only: otherwise a claim never waits to have its answer cut.
QUIET = {
    "FLEETQ_DURABLE_CLAIMS": "true",
    "FLEETQ_HEARTBEAT_INTERVAL": "5",
    "FLEETQ_DEAD_POD_THRESHOLD": "30",
    "FLEETQ_RECOVERY_INTERVAL": "3600",
    "FLEETQ_RECOVERY_ON_EXPIRY": "false",
    "FLEETQ_RETENTION_INTERVAL": "3600",
}


async def _fetch(url: str, *statements: str) -> list[Any]:
    connection = await asyncpg.connect(url)
    try:
        return [await connection.fetch(statement) for statement in statements]
    finally:
        await connection.close()


class Server:
    """A PostgreSQL server of the test's own, whose commits can be made to wait."""

    def __init__(self, node: PostgresNode) -> None:
        self.node = node

    def sql(self, *statements: str) -> list[Any]:
        return run_sync(lambda: _fetch(self.node.url(), *statements))

    def hold_commits(self, hold: bool) -> None:
        """From now on, every commit waits for a standby that never comes (or no longer)."""
        value = "'nobody'" if hold else "''"
        self.sql(f"ALTER SYSTEM SET synchronous_standby_names = {value}", "SELECT pg_reload_conf()")

    def cut_answer(self, statement_like: str) -> None:
        """Terminate the backend whose commit of a statement LIKE `statement_like` waits:
        the commit stays, its answer is lost."""

        def terminated() -> bool:
            [rows] = self.sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE wait_event = 'SyncRep' AND query LIKE '{statement_like}'"
            )
            return bool(rows)

        try:
            wait_until(terminated, timeout=15, description=f"a commit of {statement_like}")
        except AssertionError as exc:
            [waiting] = self.sql(
                "SELECT wait_event, left(query, 300) AS query FROM pg_stat_activity"
                " WHERE backend_type = 'client backend'"
            )
            raise AssertionError(f"{exc}; sessions: {[dict(row) for row in waiting]}") from None


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """One server for the module; each test gets a database of its own on it."""
    base = scratch_dir("fleetq-lost-answers-")
    # Whole statements in pg_stat_activity (the claim's text runs past the default 1 kB).
    node = PostgresNode.primary(base, track_activity_query_size="16384")
    try:
        node.start()
        yield Server(node)
    finally:
        node.stop_if_running()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pod(
    server: Server, server_factory: ServerFactory, request: pytest.FixtureRequest
) -> Iterator[ServerProcess]:
    database = f"fleetq_{request.node.name.removeprefix('test_')[:40]}"
    server.sql(f"CREATE DATABASE {database}")
    try:
        yield server_factory(
            env=fleet_env("lost-a", **QUIET), database_url=server.node.url(database)
        )
    finally:
        server.hold_commits(False)  # a failed test must not leave the next one waiting


def test_a_claim_whose_answer_was_lost_is_given_back_and_run(
    server: Server, pod: ServerProcess
) -> None:
    body = {"type": HOLD_STEP_TYPE, "args": {"seconds": 0}, "delay_seconds": 1}
    response = httpx.post(f"{pod.http_url}/submit", json=body, timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == 201, response.text
    step_id = response.json()["step_id"]
    server.hold_commits(True)  # before the step falls due: its claim will wait
    server.cut_answer("%attempt = s.attempt + 1%")
    server.hold_commits(False)

    [done] = wait_all_finished(pod, [step_id], timeout=15).values()

    # The lost claim was attempt 1; its pod gave it back with no retry spent and ran it.
    assert (done["status"], done["retry_count"]) == ("completed", 0)
    assert done["result"]["attempt"] == 2
    assert metric_total(pod, "fleetq_steps_released_total") == 1


def test_an_outcome_whose_answer_was_lost_is_counted_once_as_recorded(
    server: Server, pod: ServerProcess, tmp_path: Any
) -> None:
    gate = tmp_path / "gate"
    step_id = submit_gated(pod, gate)
    wait_all_claimed(pod, [step_id])
    server.hold_commits(True)
    gate.touch()  # the handler returns; its outcome's commit waits
    server.cut_answer("%UPDATE fleetq_steps AS s%result%")
    server.hold_commits(False)

    wait_until(
        lambda: metric_total(pod, "fleetq_steps_completed_total") == 1,
        timeout=15,
        description="the outcome counted",
    )
    status = step_status(pod, step_id)
    assert (status["status"], status["result"]["attempt"]) == ("completed", 1)
    # The retry matched no row; the completer read the step and knew the write was its own.
    assert metric_total(pod, "fleetq_steps_fenced_total") == 0
