"""The leader's recovery loop, and manual recovery cycles on demand."""

import logging
import time

from fleetq_server import errors, metrics
from fleetq_server.runtime.background import BackgroundLoop, until_due
from fleetq_server.runtime.state import PodState
from fleetq_server.store.ports import RecoveryPort
from fleetq_server.store.records import RecoveryOutcome

log = logging.getLogger(__name__)

# A manual cycle without `force` reports the last cycle instead of re-running within this.
MANUAL_MIN_GAP_S = 1.0
# Wake this long after a heartbeat is due to go stale, so the cycle's clock is past it.
EXPIRY_MARGIN_S = 0.1
# The shortest wait: a pod that went stale during a cycle is recovered this soon, and a
# cycle that keeps being skipped (another pod's manual cycle holds the lock) does not spin.
MIN_WAIT_S = 0.25


class RecoveryLoop(BackgroundLoop):
    """Every `interval` seconds, if this pod leads, requeue what dead pods held.

    With `on_expiry`, the leader also wakes when the stalest live pod's heartbeat is due
    to expire: a pod killed just after a heartbeat has its steps requeued one dead-pod
    threshold later (15 s by default), rather than up to one interval after that.
    """

    name = "recovery"

    def __init__(
        self,
        store: RecoveryPort,
        state: PodState,
        interval: float,
        dead_threshold: float,
        *,
        on_expiry: bool = True,
    ) -> None:
        super().__init__(interval)
        self._store = store
        self._state = state
        self._dead_threshold = dead_threshold
        self._on_expiry = on_expiry
        self._until_expiry: float | None = None

    def next_wait(self) -> float:
        """The interval, or less when a live pod's heartbeat expires sooner."""
        return until_due(self.interval, self._until_expiry, EXPIRY_MARGIN_S, MIN_WAIT_S)

    async def run_once(self) -> None:
        """One automatic cycle; a no-op on non-leaders and while draining."""
        self._until_expiry = None
        if not self._state.is_leader or self._state.draining or self._state.fenced:
            return
        await self._run_automatic_cycle()
        if self._on_expiry:
            self._until_expiry = await self._store.pod_next_expiry(self._dead_threshold)

    async def _run_automatic_cycle(self) -> None:
        try:
            outcome, _ = await self._run_cycle("automatic", dry_run=False, min_gap_s=0.0)
        except (errors.RecoveryInProgressError, errors.PermissionDeniedError) as exc:
            log.info("automatic recovery skipped: %s", exc)
            return
        if outcome.dead_pods or outcome.orphaned_steps_found:
            log.warning(
                "recovery %s: dead pods %s, requeued %d, failed %d",
                outcome.cycle_id,
                outcome.dead_pods,
                len(outcome.requeued_steps),
                len(outcome.terminal_steps),
            )

    async def run_manual(self, *, force: bool, dry_run: bool) -> tuple[RecoveryOutcome, bool]:
        """A cycle requested by an operator; returns (outcome, ran)."""
        if not self._state.is_leader:
            # The flag is as old as our last heartbeat: right after the old leader goes
            # stale the database already names us. It decides (recovery_run checks again).
            view = await self._store.leader_get(self._dead_threshold)
            leader = view.leader.pod_id if view.leader else None
            if leader != self._state.pod_id:
                raise errors.PermissionDeniedError(
                    f"recovery runs only on the leader; current leader is {leader or 'none'}"
                )
        return await self._run_cycle(
            "manual", dry_run=dry_run, min_gap_s=0.0 if force or dry_run else MANUAL_MIN_GAP_S
        )

    async def _run_cycle(
        self, trigger: str, *, dry_run: bool, min_gap_s: float
    ) -> tuple[RecoveryOutcome, bool]:
        """One cycle through the store, counted by trigger and outcome, and timed."""
        started = time.monotonic()
        result = "error"
        try:
            outcome, ran = await self._store.recovery_run(
                self._state.pod_id,
                self._dead_threshold,
                dry_run=dry_run,
                trigger=trigger,
                min_gap_s=min_gap_s,
            )
            result = "dry_run" if dry_run else "completed" if ran else "skipped"
        except errors.RecoveryInProgressError:
            result = "in_progress"
            raise
        except errors.PermissionDeniedError:
            result = "not_leader"
            raise
        finally:
            metrics.RECOVERY_CYCLES.labels(trigger, result).inc()
        if ran:
            metrics.RECOVERY_CYCLE_SECONDS.labels(trigger).observe(time.monotonic() - started)
        if ran and not dry_run:
            for step_id in outcome.requeued_steps:
                metrics.STEPS_REQUEUED.labels(outcome.step_types[step_id]).inc()
            for step_id in outcome.terminal_steps:
                metrics.STEPS_FAILED.labels(outcome.step_types[step_id]).inc()
        return outcome, ran
