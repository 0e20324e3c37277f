"""A pod frozen (SIGSTOP) past the dead threshold comes back fenced, as a new follower."""

import signal
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
    wait_all_claimed,
    wait_all_finished,
)
from tests.support.waiting import wait_until


def test_frozen_leader_is_fenced_out_and_returns_as_a_new_follower(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    # Eldest first: the pod frozen is the leader.
    frozen, survivor = start_pods(server_factory, ["pod-x", "pod-y"])
    frozen_id, survivor_id = pod_id(frozen), pod_id(survivor)
    gate = tmp_path / "gate"
    held = [submit_gated(survivor, gate) for _ in range(CAPACITY * 2)]
    taken = [s for s, holder in wait_all_claimed(survivor, held).items() if holder == frozen_id]
    assert len(taken) == CAPACITY

    frozen.send_signal(signal.SIGSTOP)
    wait_until(lambda: _stopped(frozen.pid), timeout=5, description="the pod to stop")
    gate.touch()  # the frozen pod's executions can finish only once it thaws
    try:
        wait_until(
            lambda: health(survivor)["is_leader"],
            timeout=DEAD_THRESHOLD_S + HEARTBEAT_S + SLACK_S,
            description="the survivor to lead",
        )
        # Requeued and run again by the survivor, while the frozen pod's own executions
        # wait to write their outcomes.
        finished = wait_all_finished(survivor, held)
    finally:
        frozen.send_signal(signal.SIGCONT)
    for step_id in taken:
        assert finished[step_id]["status"] == "completed"
        assert finished[step_id]["result"] == {"pod_id": survivor_id, "attempt": 2}

    # Back, it finds itself marked down and registers again, as the youngest pod.
    returned_id = f"{frozen_id}-r2"
    wait_until(
        lambda: [p["pod_id"] for p in eligible_pods(survivor)] == [survivor_id, returned_id],
        timeout=HEARTBEAT_S + SLACK_S,
        description=f"the frozen pod to re-register as {returned_id}",
    )
    returned = health(frozen)
    assert (returned["pod_id"], returned["is_leader"]) == (returned_id, False)
    for pod in (frozen, survivor):
        assert leader_view(pod)["current_leader"] == survivor_id
    # Whatever its late executions tried to write was fenced out: the database still holds
    # the survivor's outcome, unchanged.
    assert statuses(survivor, taken) == {step_id: finished[step_id] for step_id in taken}
    assert f"re-registered as {returned_id} (was {frozen_id})" in frozen.log_text()


def _stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal (Linux: state T in /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"
