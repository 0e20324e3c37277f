"""Claims lost in a PostgreSQL crash: a pod's claim commits without waiting for its WAL
flush (store.claims.UNFLUSHED_CTE), so a crash can undo it while its handler runs. Every
step still ends with exactly one outcome, none is lost or left claimed, and outcomes
(which wait for their flush) survive the crash.

The crash is made deterministic: the WAL writer, the one process that writes an
unflushed commit's WAL by itself, is stopped before the claims (SIGSTOP), and killed
(SIGKILL) once they are made. PostgreSQL treats that as a crash of the whole server: every
backend is cut at once, the server restarts by itself and replays only the WAL that reached
the kernel (restart_after_crash). The pods are kept quiet meanwhile, so no commit of theirs
flushes the claims' WAL by chance.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import ServerFactory
from tests.faults.fault_handlers import GATED_STEP_TYPE
from tests.faults.fleet import (
    REQUEST_TIMEOUT_S,
    fleet_env,
    metric_total,
    step_status,
    wait_all_claimed,
    wait_all_finished,
)
from tests.support.databases import run_sync
from tests.support.server_process import ServerProcess
from tests.support.topologies import PostgresNode, scratch_dir
from tests.support.waiting import wait_until

# No heartbeat, recovery or retention commits while claims wait unflushed: a pod's
# heartbeat would flush them. Capacity 2, as in the rest of the fault suite.
QUIET = {
    "FLEETQ_HEARTBEAT_INTERVAL": "30",
    "FLEETQ_DEAD_POD_THRESHOLD": "90",
    "FLEETQ_RECOVERY_INTERVAL": "3600",
    "FLEETQ_RECOVERY_ON_EXPIRY": "false",
    "FLEETQ_RETENTION_INTERVAL": "3600",
}
RESTART_TIMEOUT_S = 30.0


async def _fetch(url: str, statement: str) -> list[Any]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(statement))
    finally:
        await connection.close()


class CrashableServer:
    """A PostgreSQL server of this module's own, which a test may crash."""

    def __init__(self, node: PostgresNode) -> None:
        self.node = node
        self._wal_writer: int | None = None

    def sql(self, statement: str, database: str = "postgres") -> list[Any]:
        return run_sync(lambda: _fetch(self.node.url(database), statement))

    def stop_wal_writer(self) -> None:
        """From now on, commits that do not flush themselves stay in shared memory."""
        [row] = self.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'")
        self._wal_writer = row["pid"]
        os.kill(self._wal_writer, signal.SIGSTOP)

    def crash(self) -> None:
        """Kill the stopped WAL writer: the server crashes, losing every commit whose WAL
        was still unwritten, and restarts by itself with crash recovery."""
        killed, self._wal_writer = self._wal_writer, None
        assert killed is not None, "stop_wal_writer first"
        os.kill(killed, signal.SIGKILL)

        def restarted() -> bool:
            try:
                rows = self.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'")
            except (OSError, asyncpg.PostgresError):
                return False  # not accepting connections yet
            # Connections before the server noticed the crash still see the old one.
            return [row["pid"] for row in rows] not in ([], [killed])

        wait_until(restarted, timeout=RESTART_TIMEOUT_S, description="the server's restart")

    def resume(self) -> None:
        """Let a stopped WAL writer run again (a test that ended before its crash)."""
        if self._wal_writer is not None:
            os.kill(self._wal_writer, signal.SIGCONT)
            self._wal_writer = None


@pytest.fixture(scope="module")
def server() -> Iterator[CrashableServer]:
    """One server for the module; each test gets a database of its own on it."""
    base = scratch_dir("fleetq-lost-claims-")
    node = PostgresNode.primary(base, autovacuum="off", restart_after_crash="on")
    try:
        node.start()
        yield CrashableServer(node)
    finally:
        node.stop_if_running()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database(server: CrashableServer, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "fleetq_" + re.sub(r"\W", "_", request.node.name.removeprefix("test_"))[:40]
    server.sql(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        server.resume()


def start_pod(
    server: CrashableServer, server_factory: ServerFactory, database: str, **env: str
) -> ServerProcess:
    return server_factory(
        env=fleet_env("lost-c", **QUIET, **env), database_url=server.node.url(database)
    )


def submit_together(pod: ServerProcess, *args: dict[str, Any]) -> list[str]:
    """Submit one gated step per `args` in one commit: a later submit's commit would
    flush the claims made before it."""
    steps = [{"type": GATED_STEP_TYPE, "args": step_args} for step_args in args]
    response = httpx.post(
        pod.http_url + "/submit/batch", json={"steps": steps}, timeout=REQUEST_TIMEOUT_S
    )
    assert response.status_code == 201, response.text
    return [step["step_id"] for step in response.json()["steps"]]


def claims(server: CrashableServer, database: str) -> dict[str, tuple[str, int]]:
    """Step id -> (status, attempt), read from the database itself."""
    rows = server.sql("SELECT step_id, status, attempt FROM fleetq_steps", database)
    return {row["step_id"]: (row["status"], row["attempt"]) for row in rows}


def completed_outcomes(pod: ServerProcess, step_id: str) -> list[dict[str, Any]]:
    return [a for a in step_status(pod, step_id)["attempts"] if a["outcome"] == "completed"]


def test_claims_lost_in_a_crash_are_claimed_again_and_each_step_completes_once(
    server: CrashableServer, server_factory: ServerFactory, database: str, tmp_path: Path
) -> None:
    pod = start_pod(server, server_factory, database)
    gate = tmp_path / "gate"
    server.stop_wal_writer()
    # As many steps as the pod's capacity: it stays full, its handlers held by the gate.
    step_ids = submit_together(pod, {"gate": str(gate)}, {"gate": str(gate)})
    wait_all_claimed(pod, step_ids)

    server.crash()

    # The claims are gone: both steps are pending at attempt 0 again, while their
    # handlers still run on the pod (which has no room to claim them again).
    assert claims(server, database) == {step_id: ("pending", 0) for step_id in step_ids}
    gate.touch()
    final = wait_all_finished(pod, step_ids, timeout=30)

    for step_id, status in final.items():
        assert (status["status"], status["retry_count"]) == ("completed", 0)
        assert len(completed_outcomes(pod, step_id)) == 1, status["attempts"]
    assert metric_total(pod, "fleetq_steps_completed_total") == len(step_ids)

    # Each outcome was flushed before the pod counted it: a crash now loses none of them.
    recorded = claims(server, database)
    assert {status for status, _ in recorded.values()} == {"completed"}
    server.stop_wal_writer()
    server.crash()
    assert claims(server, database) == recorded


def test_a_lost_claim_made_again_by_its_own_pod_runs_its_handler_once(
    server: CrashableServer, server_factory: ServerFactory, database: str, tmp_path: Path
) -> None:
    pod = start_pod(server, server_factory, database)
    gate, runs = tmp_path / "gate", tmp_path / "runs"
    server.stop_wal_writer()
    # One step: the pod keeps a free slot, so it claims the step again after the crash,
    # under the token (step, pod, attempt 1) its running execution holds.
    [step_id] = submit_together(pod, {"gate": str(gate), "runs": str(runs)})
    wait_all_claimed(pod, [step_id])

    server.crash()

    wait_until(
        lambda: metric_total(pod, "fleetq_steps_claimed_total") == 2,
        timeout=10,
        description="the lost claim made again",
    )
    assert claims(server, database) == {step_id: ("claimed", 1)}
    gate.touch()
    [done] = wait_all_finished(pod, [step_id], timeout=30).values()

    assert (done["status"], done["result"]["attempt"]) == ("completed", 1)
    assert runs.read_text().splitlines() == [f"{step_id} 1"]
    assert len(completed_outcomes(pod, step_id)) == 1
    assert metric_total(pod, "fleetq_steps_fenced_total") == 0


@pytest.mark.parametrize("durable_by", ["the setting", "a type limit"])
def test_durable_claims_survive_the_crash(
    server: CrashableServer,
    server_factory: ServerFactory,
    database: str,
    tmp_path: Path,
    durable_by: str,
) -> None:
    setting = {"FLEETQ_DURABLE_CLAIMS": "true"} if durable_by == "the setting" else {}
    pod = start_pod(server, server_factory, database, **setting)
    if durable_by == "a type limit":  # handlers on lost claims would escape the limit
        response = httpx.put(
            f"{pod.http_url}/admin/limits/{GATED_STEP_TYPE}",
            json={"max_concurrency": 10},
            timeout=REQUEST_TIMEOUT_S,
        )
        assert response.status_code == 200, response.text
    gate = tmp_path / "gate"
    server.stop_wal_writer()
    [step_id] = submit_together(pod, {"gate": str(gate)})
    wait_all_claimed(pod, [step_id])
    [claim] = server.sql("SELECT status, attempt, claimed_ts FROM fleetq_steps", database)

    server.crash()

    # The very same claim (not one made again since), still the running execution's.
    assert server.sql("SELECT status, attempt, claimed_ts FROM fleetq_steps", database) == [claim]
    assert (claim["status"], claim["attempt"]) == ("claimed", 1)
    gate.touch()
    [done] = wait_all_finished(pod, [step_id], timeout=30).values()
    assert (done["status"], done["result"]["attempt"]) == ("completed", 1)
    assert metric_total(pod, "fleetq_steps_claimed_total") == 1


def test_a_submit_its_own_pod_claims_in_its_insert_keeps_its_claim_through_the_crash(
    server: CrashableServer, server_factory: ServerFactory, database: str, tmp_path: Path
) -> None:
    """The receiving pod, idle, inserts a single submit already claimed by itself, in one
    commit that waits for its flush (it acknowledges the submit): the crash cannot undo
    that claim, so the step is still claimed at its first attempt, by the very same claim,
    is never claimed again, and runs once."""
    pod = start_pod(server, server_factory, database)
    gate, runs = tmp_path / "gate", tmp_path / "runs"
    server.stop_wal_writer()
    response = httpx.post(
        pod.http_url + "/submit",
        json={"type": GATED_STEP_TYPE, "args": {"gate": str(gate), "runs": str(runs)}},
        timeout=REQUEST_TIMEOUT_S,
    )
    assert response.status_code == 201, response.text
    step_id = response.json()["step_id"]
    wait_all_claimed(pod, [step_id])
    claim_columns = "SELECT status, attempt, claimed_ts = created_ts AS at_insert FROM fleetq_steps"
    [claim] = server.sql(claim_columns, database)
    assert (claim["status"], claim["attempt"], claim["at_insert"]) == ("claimed", 1, True)

    server.crash()

    assert server.sql(claim_columns, database) == [claim]
    gate.touch()
    [done] = wait_all_finished(pod, [step_id], timeout=30).values()
    assert (done["status"], done["result"]["attempt"]) == ("completed", 1)
    assert runs.read_text().splitlines() == [f"{step_id} 1"]
    assert len(completed_outcomes(pod, step_id)) == 1
    assert metric_total(pod, "fleetq_steps_claimed_total") == 1


def test_claims_an_outcome_write_made_survive_the_crash_and_nothing_runs_twice(
    server: CrashableServer, server_factory: ServerFactory, database: str, tmp_path: Path
) -> None:
    """An outcome write claims for the slots its steps freed in the same commit, which
    waits for its flush (store.step_outcomes.step_finish_claim): once the outcomes show,
    the steps claimed after them are durable too, and a crash takes none of them back."""
    pod = start_pod(server, server_factory, database)
    opened, gate, runs = tmp_path / "open", tmp_path / "gate", tmp_path / "runs"
    opened.touch()
    server.stop_wal_writer()
    # Capacity 2: the first two run at once; their outcome write claims the other two.
    steps = [
        {"type": GATED_STEP_TYPE, "args": {"gate": str(opened)}, "priority": 1},
        {"type": GATED_STEP_TYPE, "args": {"gate": str(opened)}, "priority": 1},
        {"type": GATED_STEP_TYPE, "args": {"gate": str(gate), "runs": str(runs)}},
        {"type": GATED_STEP_TYPE, "args": {"gate": str(gate), "runs": str(runs)}},
    ]
    response = httpx.post(
        pod.http_url + "/submit/batch", json={"steps": steps}, timeout=REQUEST_TIMEOUT_S
    )
    assert response.status_code == 201, response.text
    step_ids = [step["step_id"] for step in response.json()["steps"]]
    expected = {step_ids[0]: ("completed", 1), step_ids[1]: ("completed", 1)}
    expected |= {step_id: ("claimed", 1) for step_id in step_ids[2:]}
    wait_until(
        lambda: claims(server, database) == expected, timeout=10, description="two done, two held"
    )

    server.crash()

    assert claims(server, database) == expected
    gate.touch()
    final = wait_all_finished(pod, step_ids, timeout=30)
    assert {(s["status"], s["retry_count"]) for s in final.values()} == {("completed", 0)}
    assert sorted(runs.read_text().splitlines()) == sorted(f"{s} 1" for s in step_ids[2:])
    assert metric_total(pod, "fleetq_steps_claimed_total") == 4
    assert metric_total(pod, "fleetq_steps_fenced_total") == 0
