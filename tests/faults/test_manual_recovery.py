"""POST /admin/recovery/run against real pods: one cycle at a time, leader only, dry runs
that change nothing, and repeats within a second reported instead of re-run."""

import asyncio
import itertools
from typing import Any

import asyncpg
import httpx

from fleetq_server.store.recovery import RECOVERY_LOCK_KEY
from tests.conftest import ServerFactory
from tests.faults.fleet import (
    DEAD_THRESHOLD_S,
    REQUEST_TIMEOUT_S,
    SLACK_S,
    eligible_pods,
    health,
    leader_view,
    pod_id,
    start_pods,
    step_status,
    submit_hold,
    wait_all_claimed,
)
from tests.support.databases import run_sync
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

RECOVERY_PATH = "/admin/recovery/run"
CONCURRENT_CLIENTS = 20


def run_recovery(pod: ServerProcess, **body: bool) -> httpx.Response:
    return httpx.post(pod.http_url + RECOVERY_PATH, json=body, timeout=REQUEST_TIMEOUT_S)


async def recorded_cycles(database_url: str) -> list[asyncpg.Record]:
    """The durable record of recovery cycles, oldest first."""
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetch(
            "SELECT cycle_id, trigger, started_ts, finished_ts FROM fleetq_recovery_cycles"
            " ORDER BY started_ts"
        )
    finally:
        await connection.close()


async def test_only_one_recovery_cycle_runs_at_a_time(
    server_factory: ServerFactory, database_url: str
) -> None:
    [leader] = start_pods(server_factory, ["solo"])

    # A cycle in progress elsewhere holds the advisory lock: a manual run is refused.
    holder = await asyncpg.connect(database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", RECOVERY_LOCK_KEY)
        refused = await asyncio.to_thread(run_recovery, leader, force=True)
        await holder.execute("SELECT pg_advisory_unlock($1)", RECOVERY_LOCK_KEY)
    finally:
        await holder.close()
    assert refused.status_code == 409, refused.text
    assert refused.json()["error_type"] == "conflict"
    assert refused.json()["path"] == RECOVERY_PATH
    assert (await asyncio.to_thread(run_recovery, leader, force=True)).status_code == 200

    # A burst of forced runs: each either ran (200) or met a running cycle (409).
    async with httpx.AsyncClient(base_url=leader.http_url, timeout=REQUEST_TIMEOUT_S) as client:
        burst = await asyncio.gather(
            *(client.post(RECOVERY_PATH, json={"force": True}) for _ in range(CONCURRENT_CLIENTS))
        )
    codes = [response.status_code for response in burst]
    assert set(codes) <= {200, 409}, [r.text for r in burst]
    ran = {r.json()["recovery_summary"]["cycle_id"] for r in burst if r.status_code == 200}
    assert len(ran) == codes.count(200) >= 1

    cycles = await recorded_cycles(database_url)
    manual = {c["cycle_id"] for c in cycles if c["trigger"] == "manual"}
    assert ran < manual and len(manual) == len(ran) + 1
    for cycle in cycles:
        assert cycle["started_ts"] <= cycle["finished_ts"], cycle
    for earlier, later in itertools.pairwise(cycles):
        assert earlier["finished_ts"] <= later["started_ts"], (earlier, later)


def test_manual_recovery_is_leader_only_dry_runs_change_nothing_and_repeats_are_skipped(
    server_factory: ServerFactory, database_url: str
) -> None:
    # No automatic cycle after start-up, and a leader that cannot run `hold` steps: the
    # orphaned step stays exactly where each manual call leaves it.
    no_automatic = {"FLEETQ_RECOVERY_INTERVAL": "3600", "FLEETQ_RECOVERY_ON_EXPIRY": "false"}
    [leader] = start_pods(
        server_factory, ["manual-leader"], env={**no_automatic, "FLEETQ_HANDLERS": ""}
    )
    [holder] = start_pods(server_factory, ["manual-holder"], env=no_automatic)

    forbidden = run_recovery(holder, force=True)
    assert forbidden.status_code == 403, forbidden.text
    assert forbidden.json()["error_type"] == "permission_denied"
    assert "current leader is manual-leader" in forbidden.json()["detail"]

    step = submit_hold(leader, 60.0)
    assert wait_all_claimed(leader, [step]) == {step: "manual-holder"}
    holder.kill()
    wait_until(
        lambda: [p["pod_id"] for p in eligible_pods(leader)] == ["manual-leader"],
        timeout=DEAD_THRESHOLD_S + SLACK_S,
        description="the killed holder to go stale",
    )
    cycles_before = run_sync(lambda: recorded_cycles(database_url))

    for _ in range(2):  # the second dry run sees exactly what the first saw
        dry_run = run_recovery(leader, dry_run=True)
        assert dry_run.json()["status"] == "dry_run"
        summary = _summary(dry_run)
        assert (summary["dead_pods"], summary["requeued_steps"], summary["terminal_steps"]) == (
            ["manual-holder"],
            [step],
            [],
        )
        assert (summary["dead_pods_found"], summary["orphaned_steps_found"]) == (1, 1)
        assert (summary["steps_requeued"], summary["steps_marked_terminal"]) == (1, 0)
    status = step_status(leader, step)
    assert (status["status"], status["claimed_by"], status["retry_count"]) == (
        "claimed",
        "manual-holder",
        0,
    )
    assert run_sync(lambda: recorded_cycles(database_url)) == cycles_before

    ran = run_recovery(leader)
    # Within a second of that cycle and without force: reported, not run again. Asked
    # straight away: a status call in between once took that second on a loaded machine.
    repeat = run_recovery(leader)
    assert ran.json()["status"] == "completed"
    first = _summary(ran)
    assert (first["dead_pods"], first["requeued_steps"]) == (["manual-holder"], [step])
    assert repeat.json()["status"] == "skipped"
    assert _summary(repeat)["cycle_id"] == first["cycle_id"]
    status = step_status(leader, step)
    assert (status["status"], status["claimed_by"], status["retry_count"]) == ("pending", None, 1)

    forced = run_recovery(leader, force=True)
    assert forced.json()["status"] == "completed"
    second = _summary(forced)
    assert second["cycle_id"] != first["cycle_id"]
    assert (second["dead_pods"], second["orphaned_steps_found"]) == ([], 0)
    assert step_status(leader, step)["retry_count"] == 1

    recorded = run_sync(lambda: recorded_cycles(database_url))
    assert [c["cycle_id"] for c in recorded[len(cycles_before) :]] == [
        first["cycle_id"],
        second["cycle_id"],
    ]


def test_new_leader_accepts_recovery_before_its_own_heartbeat_notices(
    server_factory: ServerFactory, database_url: str
) -> None:
    # Heartbeats 30 s apart, and the killed leader's last one moved an hour back: the
    # database names the successor at once, its own heartbeat will not say so for a while.
    slow = {"FLEETQ_HEARTBEAT_INTERVAL": "30", "FLEETQ_DEAD_POD_THRESHOLD": "60"}
    old_leader, successor = start_pods(server_factory, ["late-a", "late-b"], env=slow)
    old_leader.kill()
    run_sync(lambda: _backdate_heartbeat(database_url, pod_id(old_leader)))
    assert leader_view(successor)["current_leader"] == pod_id(successor)
    assert not health(successor)["is_leader"]

    response = run_recovery(successor, force=True)
    assert response.status_code == 200, response.text
    assert _summary(response)["dead_pods"] == [pod_id(old_leader)]


async def _backdate_heartbeat(database_url: str, pod: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "UPDATE fleetq_pods SET last_heartbeat_ts = now() - interval '1 hour',"
            " expires_at = now() - interval '1 hour' WHERE pod_id = $1",
            pod,
        )
    finally:
        await connection.close()


def _summary(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    summary: dict[str, Any] = response.json()["recovery_summary"]
    return summary
