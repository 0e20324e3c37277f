"""The leader's retention loop: fails pending steps past their expiry, and deletes finished
steps, recovery records and down pods past their age, and remote workers long unseen."""

import logging
from collections.abc import Awaitable, Callable

from fleetq_server import metrics
from fleetq_server.runtime.background import BackgroundLoop
from fleetq_server.runtime.state import PodState
from fleetq_server.store.ports import RetentionPort

log = logging.getLogger(__name__)

# Rows per DELETE: each batch is a short transaction of its own.
BATCH_SIZE = 1000
# Batches per run; a run that reaches it runs again at once, so a large backlog is worked
# off steadily while leadership is re-checked and progress logged between runs.
MAX_BATCHES_PER_RUN = 100


class RetentionLoop(BackgroundLoop):
    """Every `interval` seconds, if this pod leads, fail pending steps past their expiry,
    then delete completed and failed steps, recovery records and pods marked down, older
    than `retention_s`, and remote workers unseen for `worker_retention_s` that hold no
    lease; a retention of 0 keeps those rows forever (expiry still runs)."""

    name = "retention"

    def __init__(
        self,
        store: RetentionPort,
        state: PodState,
        interval: float,
        retention_s: float,
        *,
        worker_retention_s: float = 0.0,
    ) -> None:
        super().__init__(interval)
        self._store = store
        self._state = state
        self._retention_s = retention_s
        self._worker_retention_s = worker_retention_s

    async def run_once(self) -> None:
        """Expire up to MAX_BATCHES_PER_RUN batches, then delete as many; a no-op unless
        this pod leads. Each has its own budget: an expiry backlog never starves deletes."""
        _, expiry_budget = await self._expire_batches(MAX_BATCHES_PER_RUN)
        budget = MAX_BATCHES_PER_RUN
        age = self._retention_s
        steps, budget = await self._delete_batches(
            self._store.step_delete_finished_before, age, budget
        )
        records, budget = await self._delete_batches(
            self._store.recovery_record_delete_before, age, budget
        )
        pods, budget = await self._delete_batches(self._store.pod_delete_down_before, age, budget)
        workers, budget = await self._delete_batches(
            self._store.worker_delete_unseen_before, self._worker_retention_s, budget
        )
        if steps or records or pods or workers:
            log.info(
                "retention deleted %d finished steps, %d recovery records, %d down pods"
                " and %d unseen workers",
                steps,
                records,
                pods,
                workers,
            )
        if budget == 0 or expiry_budget == 0:
            self.wake()

    async def _expire_batches(self, budget: int) -> tuple[int, int]:
        """Fail expired pending steps until a batch comes back short or `budget` batches are
        spent; returns (steps expired, batches left)."""
        expired = 0
        while budget > 0 and self._state.acts_as_leader:
            budget -= 1
            batch = await self._store.step_expire_pending(BATCH_SIZE)
            expired += batch
            metrics.STEPS_EXPIRED.inc(batch)
            if batch < BATCH_SIZE:
                break
        if expired:
            log.info("expired %d pending steps", expired)
        return expired, budget

    async def _delete_batches(
        self, delete: Callable[[float, int], Awaitable[int]], age_s: float, budget: int
    ) -> tuple[int, int]:
        """Delete rows older than `age_s` (0: none) until a batch comes back short or
        `budget` batches are spent, re-checking leadership before each; returns (rows
        deleted, batches left)."""
        deleted = 0
        while budget > 0 and age_s > 0 and self._state.acts_as_leader:
            budget -= 1
            batch = await delete(age_s, BATCH_SIZE)
            deleted += batch
            if batch < BATCH_SIZE:
                break
        return deleted, budget
