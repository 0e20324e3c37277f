"""Leased claims for workers outside the pod (ClaimSteps): claim now, or wait for a
submit of the worker's types, and never hand steps to a caller that has left."""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from fleetq_server import errors, metrics
from fleetq_server.runtime.claim_waiters import ClaimWaiters
from fleetq_server.runtime.state import PodState
from fleetq_server.store.ports import LeasePort
from fleetq_server.store.records import LeasedStep

log = logging.getLogger(__name__)

# A long poll answers this long before its caller's deadline, so the answer (steps the
# caller now holds) arrives before the caller gives up on it.
DEADLINE_MARGIN_S = 0.5


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """One ClaimSteps call, validated."""

    worker_id: str
    step_types: list[str]
    max_steps: int
    wait_s: float
    lease_s: float


class RemoteClaims:
    """Serves ClaimSteps for one pod. Its waiters are woken by the pod's submit LISTEN
    (`notify`; a reconnect wakes them all), and when the next pending step of their types
    falls due; only while the LISTEN is down (`listening()` false) do they poll, every
    `poll_interval`, as the pod's own claim loop does."""

    def __init__(
        self,
        store: LeasePort,
        state: PodState,
        poll_interval: float,
        listening: Callable[[], bool],
    ) -> None:
        self._store = store
        self._state = state
        self._poll_interval = poll_interval
        self._listening = listening
        self.waiters = ClaimWaiters()
        metrics.track_long_polls(lambda: self.waiters.waiting)

    def notify(self, counts: Mapping[str, int] | None) -> None:
        """A submit NOTIFY's new steps by type (None: any), from the pod's listener."""
        self.waiters.notify(counts)

    async def claim(
        self, request: ClaimRequest, time_left: Callable[[], float | None]
    ) -> list[LeasedStep]:
        """Lease up to `request.max_steps` steps; with none to claim, wait up to
        `request.wait_s` (less near the caller's deadline, `time_left()`) for some.

        If the call is cancelled (its client left, or its deadline passed) while a claim
        statement runs, the steps it took go back to pending without spending a retry:
        a lease nobody heard of would hold them until it expired.
        """
        if not self._state.may_claim:
            raise errors.DatabaseUnavailableError("this pod is not serving claims now")
        ends = time.monotonic() + request.wait_s
        with self.waiters.watching(request.step_types, request.max_steps) as waiter:
            while True:
                waiter.begin_claim()
                began = time.monotonic()
                steps = await self._claim_once(request)
                if steps:
                    return steps
                wait = self._wait_budget(ends, time_left)
                if wait <= 0:
                    return []
                since = time.monotonic() - began  # a step due since the claim is due now
                due = await self._store.step_next_due(request.step_types, since)
                if due is not None:
                    wait = min(wait, max(due, 0.0))
                if not self._listening():
                    wait = min(wait, self._poll_interval)
                await waiter.wait(wait)
                if self._wait_budget(ends, time_left) <= 0 or not self._state.may_claim:
                    return []

    @staticmethod
    def _wait_budget(ends: float, time_left: Callable[[], float | None]) -> float:
        """Seconds the call may still wait: its own wait, cut short by its deadline."""
        budget = ends - time.monotonic()
        remaining = time_left()
        if remaining is not None:
            budget = min(budget, remaining - DEADLINE_MARGIN_S)
        return budget

    async def _claim_once(self, request: ClaimRequest) -> list[LeasedStep]:
        """One claim statement, shielded from the call's cancellation: if the call is
        cancelled meanwhile, what the statement took is released once it returns."""
        claiming = asyncio.ensure_future(
            self._store.step_lease_claim(
                self._state.pod_id,
                request.worker_id,
                request.step_types,
                request.max_steps,
                request.lease_s,
            )
        )
        try:
            steps = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            await self._release_abandoned(claiming)
            raise
        # One increment per type, not per step: each takes the counter's lock.
        for step_type, count in Counter(step.type for step in steps).items():
            metrics.child(metrics.REMOTE_CLAIMS, step_type).inc(count)
        return steps

    async def _release_abandoned(self, claiming: "asyncio.Future[list[LeasedStep]]") -> None:
        """Give back the steps of a claim whose caller left."""
        try:
            steps: Sequence[LeasedStep] = await claiming
        except Exception:  # the claim failed: it took nothing
            return
        if steps:
            answers = await self._store.step_lease_release([(s.step_id, s.attempt) for s in steps])
            released = sum(answer == "pending" for answer in answers)
            log.info("released %d steps claimed for a caller that left", released)
