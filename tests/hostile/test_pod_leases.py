"""Issue 11, liveness settings that differ between pods: each pod declares its own lease and
is judged by it, so a pod with a slow heartbeat is not declared dead by a leader with a short
threshold, and a pod that stops beating is still recovered once its own lease ends."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.conftest import ServerFactory
from tests.faults.fleet import (
    eligible_pods,
    fleet_env,
    pod_id,
    step_status,
    submit_hold,
    wait_all_claimed,
)
from tests.support.databases import run_sync
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

# The leader beats fast and judges with a short threshold; the joiner beats slowly and
# declares a long lease, as pods started with different settings in a rolling update do.
LEADER_ENV = {"FLEETQ_HEARTBEAT_INTERVAL": "0.25", "FLEETQ_DEAD_POD_THRESHOLD": "1"}
JOINER_HEARTBEAT_S = 2.0
JOINER_LEASE_S = 5.0
JOINER_ENV = {
    "FLEETQ_HEARTBEAT_INTERVAL": str(JOINER_HEARTBEAT_S),
    "FLEETQ_DEAD_POD_THRESHOLD": str(JOINER_LEASE_S),
}


async def _fetch(database_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(database_url)
    try:
        return [dict(row) for row in await connection.fetch(sql, *args)]
    finally:
        await connection.close()


def _heartbeats_seen(leader: ServerProcess, joiner_id: str, seen: set[str]) -> bool:
    """Record the joiner's heartbeat times as the leader reports them; True after three."""
    for pod in eligible_pods(leader):
        if pod["pod_id"] == joiner_id:
            seen.add(pod["last_heartbeat_ts"])
    return len(seen) >= 3


def test_pods_with_different_liveness_settings_coexist(
    server_factory: ServerFactory, database_url: str
) -> None:
    leader = server_factory(env=fleet_env("leader", **LEADER_ENV))
    joiner = server_factory(env=fleet_env("joiner", **JOINER_ENV))
    seen: set[str] = set()
    # Two full heartbeat intervals of the joiner, each longer than the leader's threshold:
    # judged by that threshold, it would have been marked down and come back as joiner-r2.
    wait_until(
        lambda: _heartbeats_seen(leader, "joiner", seen),
        timeout=6 * JOINER_HEARTBEAT_S,
        description="three heartbeats of the joiner under its own id",
    )
    assert [pod["pod_id"] for pod in eligible_pods(leader)] == ["leader", "joiner"]
    cycles = run_sync(lambda: _fetch(database_url, "SELECT dead_pods FROM fleetq_recovery_cycles"))
    assert all(not cycle["dead_pods"] for cycle in cycles)
    assert "presumed dead" not in joiner.log_text()


def test_a_silent_pod_is_recovered_after_its_own_lease(
    server_factory: ServerFactory, database_url: str
) -> None:
    leader = server_factory(env=fleet_env("leader", FLEETQ_MAX_PARALLELISM="1", **LEADER_ENV))
    blocker = submit_hold(leader, 3600)  # fills the leader, so the joiner takes the next
    wait_all_claimed(leader, [blocker])
    joiner = server_factory(env=fleet_env("joiner", **JOINER_ENV))
    held = submit_hold(leader, 3600, max_retries=0)
    assert wait_all_claimed(leader, [held]) == {held: pod_id(joiner)}

    joiner.kill()
    wait_until(
        lambda: step_status(leader, held)["status"] == "failed",
        timeout=JOINER_LEASE_S + 15,
        description="the silent joiner's step recovered",
    )
    [pod] = run_sync(
        lambda: _fetch(
            database_url,
            "SELECT p.status, p.expires_at, c.started_ts FROM fleetq_pods AS p"
            " JOIN fleetq_recovery_cycles AS c ON p.pod_id = ANY(c.dead_pods)"
            " WHERE p.pod_id = 'joiner'",
        )
    )
    assert pod["status"] == "down"
    # Declared dead only once its own lease had ended, not after the leader's threshold.
    assert pod["started_ts"] >= pod["expires_at"]
    [last_beat] = run_sync(
        lambda: _fetch(
            database_url,
            "SELECT expires_at - last_heartbeat_ts AS lease FROM fleetq_pods"
            " WHERE pod_id = 'joiner'",
        )
    )
    assert last_beat["lease"].total_seconds() == pytest.approx(JOINER_LEASE_S)


@pytest.mark.parametrize(("heartbeat", "threshold"), [("2", "3"), ("5", "9.9")])
def test_start_up_refuses_a_threshold_under_two_heartbeats(
    server_factory: ServerFactory, heartbeat: str, threshold: str
) -> None:
    env = {"FLEETQ_HEARTBEAT_INTERVAL": heartbeat, "FLEETQ_DEAD_POD_THRESHOLD": threshold}
    pod = server_factory(env=env, wait=False)
    assert pod.wait_for_exit(timeout=30) == 2
    assert "must be at least two heartbeats" in pod.log_text()
