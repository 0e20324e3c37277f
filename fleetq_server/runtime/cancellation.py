"""Cancels of running steps: a LISTEN that hears each request at once, and a poll of this
pod's own cancelled claims behind it (a notification missed while disconnected, or a
request that arrived before the claim's step was launched here)."""

from fleetq_server.runtime.background import BackgroundLoop
from fleetq_server.runtime.executor import StepExecutor
from fleetq_server.runtime.state import PodState
from fleetq_server.store.ports import CancelPort


class CancelListener(BackgroundLoop):
    """Keeps the cancel LISTEN open and, every interval while steps run here, asks the store
    which of them have a cancel requested; each reaches `StepExecutor.request_cancel`."""

    name = "cancels"

    def __init__(
        self, store: CancelPort, state: PodState, executor: StepExecutor, interval: float
    ) -> None:
        super().__init__(interval)
        self._store = store
        self._state = state
        self._executor = executor
        self._subscription = store.step_cancel_subscription(self._heard)

    def _heard(self, step_id: str) -> None:
        """A cancel requested anywhere in the fleet: stop the step if it runs here."""
        self._executor.request_cancel(step_id)

    async def run_once(self) -> None:
        """Reconnect if needed; then stop whatever running step has a cancel requested."""
        await self._subscription.ensure()
        if not self._executor.running:
            return
        for step_id in await self._store.step_cancels_requested(self._state.pod_id):
            self._executor.request_cancel(step_id)

    async def stop(self) -> None:
        """Stop the loop and close the LISTEN connection."""
        await super().stop()
        await self._subscription.close()
