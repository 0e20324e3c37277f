"""Leader failover: a killed leader is replaced by the next eldest, a stopping one hands over."""

import time
from pathlib import Path

from tests.conftest import ServerFactory
from tests.faults.fleet import (
    CAPACITY,
    DEAD_THRESHOLD_S,
    HEARTBEAT_S,
    SLACK_S,
    eligible_pods,
    health,
    leader_view,
    pod_id,
    start_pods,
    statuses,
    submit_gated,
    submit_hold,
    wait_all_claimed,
    wait_all_finished,
    wait_released_by,
)
from tests.support.waiting import wait_until


def test_killed_leader_is_replaced_by_the_next_eldest_which_recovers_its_steps(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    # No periodic cycle to wait for: the successor recovers as it takes over, or never.
    old_leader, successor, third = start_pods(
        server_factory, ["kl-a", "kl-b", "kl-c"], env={"FLEETQ_RECOVERY_INTERVAL": "3600"}
    )
    old_id, successor_id = pod_id(old_leader), pod_id(successor)
    survivors = [successor, third]
    gate = tmp_path / "gate"
    held = [submit_gated(successor, gate) for _ in range(CAPACITY * 3)]
    orphans = [s for s, holder in wait_all_claimed(successor, held).items() if holder == old_id]
    assert len(orphans) == CAPACITY

    old_leader.kill()
    killed_at = time.monotonic()
    gate.touch()

    # The successor notices at its first heartbeat after the old leader's goes stale.
    takeover_bound = DEAD_THRESHOLD_S + HEARTBEAT_S + SLACK_S
    wait_until(
        lambda: health(successor)["is_leader"],
        timeout=takeover_bound - (time.monotonic() - killed_at),
        description="the next eldest pod to lead",
    )
    for pod in survivors:
        view = leader_view(pod)
        assert view["current_leader"] == successor_id, (pod_id(pod), view)
        live = [p["pod_id"] for p in view["election_details"]["eligible_pods"]]
        assert live == [successor_id, pod_id(third)]
    assert not health(third)["is_leader"]

    wait_released_by(
        successor,
        orphans,
        old_id,
        timeout=takeover_bound - (time.monotonic() - killed_at),
    )
    final = wait_all_finished(successor, held)
    assert {s["status"] for s in final.values()} == {"completed"}
    for step_id in orphans:
        assert final[step_id]["retry_count"] == 1
        assert final[step_id]["result"]["pod_id"] in map(pod_id, survivors)


def test_leader_stopping_cleanly_hands_over_at_once(server_factory: ServerFactory) -> None:
    # A dead threshold far beyond the waits below: the handover cannot come from the
    # leader's heartbeat going stale, only from its clean shutdown.
    leader, successor = start_pods(
        server_factory, ["calm-a", "calm-b"], env={"FLEETQ_DEAD_POD_THRESHOLD": "60"}
    )
    leader_id, successor_id = pod_id(leader), pod_id(successor)
    held = [submit_hold(successor, 60.0) for _ in range(CAPACITY * 2)]
    released = [s for s, holder in wait_all_claimed(successor, held).items() if holder == leader_id]

    assert leader.stop() == 0

    # Marked down before it exited: every pod sees the new leader with no wait at all.
    view = leader_view(successor)
    assert view["current_leader"] == successor_id
    assert [p["pod_id"] for p in eligible_pods(successor)] == [successor_id]
    wait_until(
        lambda: health(successor)["is_leader"],
        timeout=HEARTBEAT_S + SLACK_S,
        description="the successor to lead after one heartbeat",
    )
    # Its unfinished steps went back to pending without spending a retry (the successor
    # is full, so they wait there).
    for status in statuses(successor, released).values():
        assert (status["status"], status["claimed_by"], status["retry_count"]) == (
            "pending",
            None,
            0,
        )
