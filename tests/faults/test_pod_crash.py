"""kill -9 a pod that holds steps: nothing is lost, and retries are counted exactly."""

import time
from pathlib import Path

from tests.conftest import ServerFactory
from tests.faults.fleet import (
    CAPACITY,
    DEAD_THRESHOLD_S,
    RECOVERY_INTERVAL_S,
    SLACK_S,
    pod_id,
    start_pods,
    step_status,
    submit_gated,
    submit_hold,
    wait_all_claimed,
    wait_all_finished,
    wait_released_by,
)
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

# A dead pod's steps are requeued by the first recovery cycle after its heartbeat goes stale.
REQUEUE_BOUND_S = DEAD_THRESHOLD_S + RECOVERY_INTERVAL_S + SLACK_S


def test_pod_killed_while_running_steps_loses_none(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    pods = start_pods(server_factory, ["crash-a", "crash-b", "crash-c"])
    leader, victim = pods[0], pods[-1]  # eldest first: the victim is not the leader
    victim_id = pod_id(victim)
    gate = tmp_path / "gate"
    held = [submit_gated(leader, gate) for _ in range(CAPACITY * len(pods))]
    orphans = [s for s, holder in wait_all_claimed(leader, held).items() if holder == victim_id]
    assert len(orphans) == CAPACITY  # every pod is full, so the victim holds its share

    victim.kill()
    killed_at = time.monotonic()
    gate.touch()
    later = [submit_hold(leader, 0.1) for _ in range(6)]
    wait_released_by(
        leader, orphans, victim_id, timeout=REQUEUE_BOUND_S - (time.monotonic() - killed_at)
    )

    final = wait_all_finished(leader, held + later)
    assert {s["status"] for s in final.values()} == {"completed"}
    for step_id, status in final.items():
        orphaned = step_id in orphans
        assert status["retry_count"] == (1 if orphaned else 0), status
        assert status["result"]["pod_id"] == status["claimed_by"] != victim_id
        assert status["result"]["attempt"] == (2 if orphaned else 1)


def one_step_held(
    server_factory: ServerFactory, name: str, **settings: str
) -> tuple[ServerProcess, ServerProcess, str]:
    """A leader that runs no steps, a `<name>-holder` pod, and a long `hold` step the holder
    has claimed; `settings` (FLEETQ_ prefix left off) apply to both pods."""
    env = {f"FLEETQ_{key}": value for key, value in settings.items()}
    [leader] = start_pods(server_factory, [f"{name}-leader"], env={**env, "FLEETQ_HANDLERS": ""})
    [holder] = start_pods(server_factory, [f"{name}-holder"], env=env)
    step = submit_hold(leader, 60.0)
    assert wait_all_claimed(leader, [step]) == {step: f"{name}-holder"}
    return leader, holder, step


def test_a_dead_pods_steps_are_requeued_as_its_heartbeat_expires_not_an_interval_later(
    server_factory: ServerFactory,
) -> None:
    # An interval far longer than the test: only the leader's expiry wake-up can requeue.
    leader, holder, step = one_step_held(server_factory, "expiry", RECOVERY_INTERVAL="3600")

    holder.kill()
    wait_released_by(leader, [step], "expiry-holder", timeout=DEAD_THRESHOLD_S + SLACK_S)
    assert step_status(leader, step)["retry_count"] == 1


def test_a_pod_restarted_at_once_under_its_old_id_gets_its_lost_steps_back(
    server_factory: ServerFactory,
) -> None:
    # A dead-pod threshold far longer than a restart: the killed process never goes stale,
    # its successor (same FLEETQ_POD_ID) beats for it, and only the incarnation check in
    # recovery can tell that the old claims are nobody's.
    leader, holder, step = one_step_held(server_factory, "reuse", DEAD_POD_THRESHOLD="60")

    holder.kill()
    started_again = time.monotonic()
    start_pods(server_factory, ["reuse-holder"], env={"FLEETQ_DEAD_POD_THRESHOLD": "60"})
    assert time.monotonic() - started_again < 60  # still inside the old process's threshold

    def requeued() -> bool:
        return step_status(leader, step)["retry_count"] == 1

    wait_until(requeued, timeout=RECOVERY_INTERVAL_S + SLACK_S, description="the step requeued")


def test_step_survives_exactly_max_retries_orphanings_and_fails_on_the_next(
    server_factory: ServerFactory,
) -> None:
    # The leader runs no `hold` steps: every execution happens on a holder this test kills.
    [leader] = start_pods(server_factory, ["budget-leader"], env={"FLEETQ_HANDLERS": ""})
    holders = start_pods(server_factory, [f"budget-holder-{n}" for n in range(4)])
    by_id = {pod_id(holder): holder for holder in holders}
    step = submit_hold(leader, 60.0, max_retries=3)

    for orphaning in range(1, 5):

        def claimed() -> str | None:
            status = step_status(leader, step)
            return status["claimed_by"] if status["status"] == "claimed" else None

        holder_id = wait_until(claimed, timeout=REQUEUE_BOUND_S, description="a holder claims")
        assert step_status(leader, step)["retry_count"] == orphaning - 1
        by_id.pop(holder_id).kill()
        wait_released_by(leader, [step], holder_id, timeout=REQUEUE_BOUND_S)

    final = step_status(leader, step)
    assert final["status"] == "failed"
    assert final["retry_count"] == 3
    assert final["error"]["type"] == "PodLost"
    assert "no retries left" in final["error"]["message"]
    assert not by_id  # each of the four executions ran on a different, now dead, holder
