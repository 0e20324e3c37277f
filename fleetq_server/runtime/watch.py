"""The pod's watch hub: every WatchStep stream on this pod, served by shared reads.

Nothing polls per watcher. The pod records each step it has watchers for in the store, so
writers' changes of that step are notified (a trigger, see store/step_watch.py); the hub
LISTENs on one connection, re-reads the notified steps in one query and hands each new
state to that step's watchers. A periodic re-read of every watched step, also one query,
covers what a notification cannot: changes made while the LISTEN connection was down, a
change racing a watch's registration, and pods with no LISTEN at all (behind a pooler).
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from fleetq_server import errors, metrics
from fleetq_server.runtime.background import BackgroundLoop
from fleetq_server.runtime.state import PodState
from fleetq_server.store.ports import WatchPort
from fleetq_server.store.records import StepRecord

log = logging.getLogger(__name__)

# A step in one of these never changes again: its watch ends there.
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
# Steps per re-read: one statement's worth of ids.
READ_CHUNK = 1000
# A write whose statement began before a watch's registration committed cannot see it, so
# its trigger notifies nothing; when it commits after the watcher's first read, only a
# re-read finds the change. One re-read this long after each registration bounds that gap.
REGISTRATION_SETTLE_S = 1.0


def _version(step: StepRecord) -> tuple[str, datetime]:
    """What tells two reads of a step apart: every write stamps last_update_ts."""
    return step.status, step.last_update_ts


class StepWatchHub(BackgroundLoop):
    """Fans changes of watched steps out to their watchers; its loop re-reads them."""

    name = "watch-hub"

    def __init__(self, store: WatchPort, state: PodState, interval: float) -> None:
        super().__init__(interval)
        self._store = store
        self._state = state
        self._subscription = store.step_change_subscription(self._changed)
        # step_id -> the queues of its watchers on this pod.
        self._watchers: dict[str, set[asyncio.Queue[StepRecord]]] = {}
        # step_id -> the registration of its watch in the store (the pod id it used).
        self._registrations: dict[str, asyncio.Task[str]] = {}
        # The last state handed out per step, so an unchanged re-read wakes nobody.
        self._versions: dict[str, tuple[str, datetime]] = {}
        self._notified: set[str] = set()
        self._notified_all = False

    @property
    def watcher_count(self) -> int:
        """Streams open on this pod."""
        return sum(len(queues) for queues in self._watchers.values())

    async def watch(self, step_id: str) -> AsyncIterator[StepRecord]:
        """The step's current state, then each change, until a terminal state.

        NotFoundError when there is no such step. The watcher registers before its first
        read, so a change after that read is always delivered.
        """
        queue: asyncio.Queue[StepRecord] = asyncio.Queue()
        await self._add(step_id, queue)
        metrics.WATCHERS.inc()
        try:
            found = await self._store.step_get_many([step_id])
            if not found:
                raise errors.NotFoundError(f"Step {step_id} not found")
            step = found[0]
            seen = _version(step)
            yield step
            while step.status not in TERMINAL_STATUSES:
                step = await queue.get()
                if _version(step) != seen:  # also drops a repeat of the first read
                    seen = _version(step)
                    yield step
        finally:
            metrics.WATCHERS.dec()
            await self._discard(step_id, queue)

    async def _add(self, step_id: str, queue: asyncio.Queue[StepRecord]) -> None:
        self._watchers.setdefault(step_id, set()).add(queue)
        registration = self._registrations.get(step_id)
        if registration is None:
            registration = asyncio.create_task(self._register(step_id))
            self._registrations[step_id] = registration
        try:
            # Shielded: a watcher cancelled here must not cancel the others' registration.
            await asyncio.shield(registration)
            if not self._subscription.connected and await self._subscription.ensure():
                self.wake()
            asyncio.get_running_loop().call_later(REGISTRATION_SETTLE_S, self.wake)
        except BaseException:
            await self._discard(step_id, queue)
            raise

    async def _register(self, step_id: str) -> str:
        pod_id = self._state.pod_id
        await self._store.step_watch_add(step_id, pod_id)
        return pod_id

    async def _discard(self, step_id: str, queue: asyncio.Queue[StepRecord]) -> None:
        """Remove a watcher; the step's last one also removes the step's registration."""
        queues = self._watchers.get(step_id)
        if queues is None:
            return
        queues.discard(queue)
        if queues:
            return
        del self._watchers[step_id]
        self._versions.pop(step_id, None)
        registration = self._registrations.pop(step_id)
        # Best effort: a row left behind only costs notifications nobody reads, and goes
        # with its pod's row.
        with contextlib.suppress(errors.FleetQError, asyncio.CancelledError):
            pod_id = await registration
            await self._store.step_watch_remove([step_id], pod_id)

    def _changed(self, step_ids: list[str] | None) -> None:
        """A notification: these watched steps (of any pod; None: any) have changed."""
        if step_ids is None:
            self._notified_all = True
        else:
            self._notified.update(i for i in step_ids if i in self._watchers)
        if self._notified_all or self._notified:
            self.wake()

    async def run_once(self) -> None:
        """Re-read the notified steps, or every watched step when woken by the interval or
        a (re)connected LISTEN, and hand the changed ones to their watchers."""
        notified, self._notified = self._notified, set()
        read_all, self._notified_all = self._notified_all or not notified, False
        if not self._watchers:
            return
        if await self._subscription.ensure():
            read_all = True  # notifications may have been missed while disconnected
        step_ids = list(self._watchers) if read_all else list(notified)
        for start in range(0, len(step_ids), READ_CHUNK):
            self._deliver(await self._store.step_get_many(step_ids[start : start + READ_CHUNK]))

    def _deliver(self, steps: Sequence[StepRecord]) -> None:
        for step in steps:
            queues = self._watchers.get(step.step_id)
            if not queues or self._versions.get(step.step_id) == _version(step):
                continue
            self._versions[step.step_id] = _version(step)
            for queue in queues:
                queue.put_nowait(step)

    async def stop(self) -> None:
        """Stop the loop and close the LISTEN connection."""
        await super().stop()
        await self._subscription.close()
