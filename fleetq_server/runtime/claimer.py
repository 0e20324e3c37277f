"""The claim loop: takes pending steps up to the free capacity and launches them."""

import asyncio

from fleetq_server import metrics
from fleetq_server.runtime.background import BackgroundLoop
from fleetq_server.runtime.executor import StepExecutor
from fleetq_server.runtime.state import PodState
from fleetq_server.store.ports import ClaimPort


class ClaimLoop(BackgroundLoop):
    """Claims as many steps as there is free capacity, then waits to be woken.

    Woken by a submit NOTIFY, by a finished step freeing a slot, when the next scheduled
    or backing-off step of its types falls due (`next_wait`), or by the slow poll
    (`interval`) that catches anything else, such as backoffs expiring.
    """

    name = "claimer"

    def __init__(
        self,
        store: ClaimPort,
        state: PodState,
        executor: StepExecutor,
        step_types: list[str],
        poll_interval: float,
    ) -> None:
        super().__init__(poll_interval)
        self._store = store
        self._state = state
        self._executor = executor
        self._step_types = step_types
        # Held from a claim's statement until its steps are launched: see stop().
        self._claiming = asyncio.Lock()
        # Seconds from the last claim until the next not-yet-claimable step falls due.
        self._next_due: float | None = None

    async def run_once(self) -> None:
        """Claim up to the free capacity and start executing what was claimed."""
        async with self._claiming:
            free = self._state.free_capacity
            if not self._state.may_claim or free == 0 or not self._step_types:
                return
            claimed = await self._store.step_claim_batch(self._state.pod_id, self._step_types, free)
            for step in claimed:
                metrics.child(metrics.STEPS_CLAIMED, step.type).inc()
                # Both timestamps come from the database clock: no skew between pods.
                waited = (step.claimed_ts - step.not_before_ts).total_seconds()
                metrics.child(metrics.STEP_QUEUE_WAIT_SECONDS, step.type).observe(max(0.0, waited))
                self._executor.launch(step)
        if len(claimed) == free:
            self.wake()  # a full batch: there may be more waiting for the next free slot
        else:
            # Everything due is taken: learn when the next one is, to wake for it on time.
            # Only when not full, so a busy drain pays no extra query.
            self._next_due = await self._store.step_next_due(self._step_types)

    def next_wait(self) -> float:
        """The poll interval, or less when a scheduled step falls due sooner."""
        due, self._next_due = self._next_due, None
        return self.interval if due is None else min(self.interval, max(due, 0.0))

    async def stop(self) -> None:
        """Stop once a claim in flight has launched its steps. Cancelling it instead could
        abandon a claim the database already committed: steps claimed by this pod that
        nobody runs, until recovery requeues them and spends a retry."""
        async with self._claiming:
            await super().stop()
