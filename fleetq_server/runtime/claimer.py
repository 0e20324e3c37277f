"""The claim loop: takes pending steps up to the free capacity and launches them."""

import asyncio
import logging
import math
import time
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from fleetq_server import errors, metrics
from fleetq_server.runtime.background import BackgroundLoop
from fleetq_server.runtime.executor import StepExecutor
from fleetq_server.runtime.state import PodState
from fleetq_server.store.ports import ClaimPort, OutcomePort
from fleetq_server.store.records import ClaimedStep, InsertOutcome, NewStep, StepOutcome
from fleetq_server.store.step_outcomes import OutcomeClaimPort

log = logging.getLogger(__name__)

# How long after a claim failed on a broken connection the claimer keeps looking for steps
# it holds without running them (see `ClaimLoop._release_orphans`). A claim the database
# was still executing when the connection broke commits within its statement's run time,
# and asyncpg cancels any statement after its command timeout (store COMMAND_TIMEOUT_S).
ORPHAN_WATCH_S = 30.0
# Within that window, the first claim after a failure looks at once, later ones at most
# this often: a busy drain claims many times a second.
ORPHAN_SWEEP_INTERVAL_S = 1.0
# Event loop turns an outcome write lets pass before it counts the free slots: one
# `finish_and_claim` at capacity 8 then claimed 16 no-op steps where it claimed 8 (one
# turn: 12), halving the statements per step (pg_stat_statements, 5,000 steps).
_SETTLE_TURNS = 3


def self_claim_limit(state: PodState, step_types: Collection[str], steps: Sequence[NewStep]) -> int:
    """How many steps the insert of `steps`, received by this pod, may claim for it in the
    same transaction: none unless the pod may claim now, else up to its free capacity and
    to the received steps of its own types that are due at once (a scheduled one is not).
    Which steps it takes, and whether a type limit leaves room, is the claim statement's
    choice, the same as the claim loop's."""
    if not state.may_claim:
        return 0
    due = sum(1 for s in steps if s.type in step_types and s.run_at is None and s.delay_s is None)
    return min(state.free_capacity, due)


class ClaimerStore(ClaimPort, OutcomePort, OutcomeClaimPort, Protocol):
    """The claim loop's claims, alone or riding on the executor's outcome writes."""


class ClaimLoop(BackgroundLoop):
    """Claims as many steps as there is free capacity, then waits to be woken.

    Woken by a submit NOTIFY, by an outcome write that could not fill the slots its steps
    freed (`finish_and_claim`), when the next scheduled or backing-off step of its types
    falls due (`next_wait`), or by the slow poll (`interval`) that catches anything else,
    such as backoffs expiring.
    """

    name = "claimer"

    def __init__(
        self,
        store: ClaimerStore,
        state: PodState,
        executor: StepExecutor,
        step_types: list[str],
        poll_interval: float,
        *,
        outcomes_claim: bool = False,
    ) -> None:
        """`outcomes_claim`: the executor writes its outcomes through `finish_and_claim`,
        so the slots they free are claimed for there, not by this loop."""
        super().__init__(poll_interval)
        self._outcomes_claim = outcomes_claim
        self._store = store
        self._state = state
        self._executor = executor
        self._step_types = step_types
        # Held from a claim's statement until its steps are launched: see stop(). An
        # outcome write that claims holds it only to reserve its room (finish_and_claim).
        self._claiming = asyncio.Lock()
        # Room reserved by outcome writes whose claims are under way, and whether none is.
        self._reserved = 0
        self._writes_under_way = 0
        self._no_write_under_way = asyncio.Event()
        self._no_write_under_way.set()
        # Seconds from the last claim until the next not-yet-claimable step falls due.
        self._next_due: float | None = None
        # When (monotonic) a claim last failed without an answer: it may have committed.
        self._claim_failed_at: float | None = None
        self._next_orphan_sweep = 0.0
        # Whether submits reach this pod as notifications now (the pod sets it).
        self.listening: Callable[[], bool] = lambda: False
        # Wake-ups so far: each may mean new claimable steps. `_drained_at`: the count when
        # a self-claim last found nothing of ours waiting and left nothing pending; until
        # `_due_by` (monotonic) the loop's own timer covers the steps not due yet.
        self._wakes = 0
        self._drained_at: int | None = None
        self._due_by = 0.0

    async def run_once(self) -> None:
        """Claim up to the free capacity and start executing what was claimed."""
        async with self._claiming:
            if not self._state.may_claim or not self._step_types:
                return
            if self._claim_failed_at is not None and time.monotonic() >= self._next_orphan_sweep:
                # A claim under way may commit steps not launched yet: not orphans.
                await self._no_write_under_way.wait()
                await self._release_orphans(self._claim_failed_at)
            free = self._room()
            if free == 0:
                return
            began = time.monotonic()
            try:
                claimed = await self._store.step_claim_batch(
                    self._state.pod_id, self._step_types, free
                )
            except errors.DatabaseUnavailableError:
                self._claim_failed_at, self._next_orphan_sweep = time.monotonic(), 0.0
                raise
            self._launch(claimed)
        self._due_by = 0.0  # unknown until step_next_due answers
        if len(claimed) == free:
            # A full batch: there may be more waiting for the next free slot, which the
            # outcome write that frees it claims for, when outcomes claim.
            if not self._outcomes_claim:
                self.wake()
        else:
            # Everything due is taken: learn when the next one is, to wake for it on time.
            # Only when not full, so a busy drain pays no extra query. Counted from when
            # the claim began: a step that fell due since is due now, not forgotten.
            since = time.monotonic() - began
            self._next_due = due = await self._store.step_next_due(self._step_types, since)
            self._due_by = time.monotonic() + due if due is not None else math.inf

    async def insert_and_claim(
        self, steps: Sequence[NewStep]
    ) -> list[InsertOutcome | errors.ConflictError] | None:
        """Insert steps this pod received and claim, by the insert itself or right after
        it (store.step_insert_claim), up to `self_claim_limit` steps for it, launched at
        once: a new step starts without the round trip through NOTIFY and a claim of its
        own. None when this pod may not claim any of them now: the caller inserts them the
        ordinary way.

        Under the claim lock, like any claim, so a stop waits for its launch and free
        capacity cannot be spent twice. A claim that failed without an answer after the
        insert committed may have committed too: it is treated as the claim loop treats
        its own, and the submit stands.
        """
        if self_claim_limit(self._state, self._step_types, steps) == 0:
            return None  # the common refusal (no slot, other types) never waits on the lock
        async with self._claiming:
            # Within the room outcome writes under way have not reserved.
            limit = min(self_claim_limit(self._state, self._step_types, steps), self._room())
            if limit == 0 or self._claim_failed_at is not None:
                return None  # orphans are looked for by run_once, before any claim of ours
            wakes = self._wakes  # a wake-up during the statement may be a step it missed
            try:
                outcomes, claimed, drained = await self._store.step_insert_claim(
                    steps, self._state.pod_id, self._step_types, limit
                )
            except errors.DatabaseUnavailableError:
                # The insert may have committed, claiming steps for this pod: the submit
                # fails (its outcome unknown) and, as below, orphans are looked for.
                self._claim_failed_at, self._next_orphan_sweep = time.monotonic(), 0.0
                self.wake()
                raise
            self._drained_at = wakes if drained else None
            if claimed is None:
                self._claim_failed_at, self._next_orphan_sweep = time.monotonic(), 0.0
                self.wake()  # it looks for orphans, then claims the new steps
            else:
                self._launch(claimed)
        return outcomes

    def _room(self) -> int:
        """Free slots, and room for steps claimed ahead of one (StepExecutor.prefetch_room),
        less what outcome writes under way may claim."""
        room = self._state.free_capacity + self._executor.prefetch_room - self._reserved
        return max(0, room)

    async def finish_and_claim(self, outcomes: Sequence[StepOutcome]) -> list[str | None]:
        """Record the executor's outcomes (the completer's flush) and, in the same statement,
        claim steps for the free slots, launched at once: a busy pod's cycle pays one round
        trip and one commit instead of a claim's and an outcome's. Returns each outcome's
        new status, as `step_finish_many` does.

        The executor does not wake this loop for the slots its outcomes free; this wakes it
        when the claim did not fill them (it then learns when the next step falls due) or
        could not run. When nothing can be waiting (`slot_freed`), it writes the outcomes
        alone and wakes nothing. The commit waits for its WAL flush, as an outcome's must,
        and the claim rides on it. An answer lost may hide a committed claim: the orphan
        watch starts, as after a claim of the loop's own, and the completer's retry of the
        outcomes finds it set and writes them alone.

        The claim lock covers only counting the room and reserving it: the statement runs
        outside it, so the next write (claims_ahead.WRITES_IN_FLIGHT) can be ready while
        this one is in the database. Until this one's steps are launched its room stays
        reserved, so no other claim spends it; the orphan watch and stop() wait for every
        write under way, since its claim may commit steps not launched yet.
        """
        # The steps the previous write launched start first, and short ones finish (a step
        # claimed ahead starts a turn after the one whose slot it takes): the slots they
        # free count here, so each write claims about a capacity, not what is left of one.
        for _ in range(_SETTLE_TURNS):
            await asyncio.sleep(0)
        if self._nothing_waiting():
            return await self._store.step_finish_many(outcomes)
        async with self._claiming:
            free = self._room()
            # After a lost answer, run_once looks for orphans before any claim of ours.
            lost = self._claim_failed_at is not None
            claims = not lost and self._state.may_claim and bool(self._step_types) and free > 0
            if claims:
                self._reserve(free)
        claimed: list[ClaimedStep] | None = None
        if not claims:
            statuses = await self._store.step_finish_many(outcomes)
        else:
            try:
                statuses, claimed = await self._store.step_finish_claim(
                    outcomes, self._state.pod_id, self._step_types, free
                )
            except errors.DatabaseUnavailableError:
                self._claim_failed_at, self._next_orphan_sweep = time.monotonic(), 0.0
                self.wake()
                raise
            else:
                self._launch(claimed)  # in the same turn as the release below
            finally:
                self._release_reserved(free)
        if free > 0 and (claimed is None or len(claimed) < free):
            self.wake()
        return statuses

    def _reserve(self, room: int) -> None:
        """An outcome write's claim of up to `room` steps is under way."""
        self._reserved += room
        self._writes_under_way += 1
        self._no_write_under_way.clear()

    def _release_reserved(self, room: int) -> None:
        """That claim has ended: its steps are launched, or it failed."""
        self._reserved -= room
        self._writes_under_way -= 1
        if self._writes_under_way == 0:
            self._no_write_under_way.set()

    def wake(self) -> None:
        """Claim now: something may have become claimable."""
        self._wakes += 1
        super().wake()

    def slot_freed(self) -> None:
        """A handler returned: claim for its slot, unless nothing can be waiting. That is
        known after a self-claim that found nothing of this pod's types waiting and left
        nothing pending, with no wake-up since (submits, releases and requeues all notify
        a listening pod), while the loop's timer still covers every step not yet due. At
        100 submits/s that spares each step a claim and a step_next_due, and the next
        submit a wait for the claim lock."""
        if not self._nothing_waiting():
            self.wake()

    def _nothing_waiting(self) -> bool:
        """Whether no step of this pod's types can be claimable now (see `slot_freed`)."""
        quiet = self._drained_at == self._wakes and time.monotonic() < self._due_by
        return quiet and self.listening()

    def _launch(self, claimed: list[ClaimedStep]) -> None:
        """Count and start the claimed steps."""
        for step in claimed:
            metrics.child(metrics.STEPS_CLAIMED, step.type).inc()
            # Both timestamps come from the database clock: no skew between pods.
            waited = (step.claimed_ts - step.not_before_ts).total_seconds()
            metrics.child(metrics.STEP_QUEUE_WAIT_SECONDS, step.type).observe(max(0.0, waited))
            if not self._executor.launch(step):
                # A lost claim made again under a token that runs here: should that
                # execution's outcome be fenced out before this claim committed, the step
                # would stay held with nothing running it. The orphan watch gives it back
                # once nothing runs it.
                self._claim_failed_at, self._next_orphan_sweep = time.monotonic(), 0.0

    async def _release_orphans(self, failed_at: float) -> None:
        """Give back the steps this pod holds but is not running: claims that committed
        while their answer was lost with the connection. Recovery would never requeue
        them (their pod is alive), so they would wait for this pod's restart.

        Runs under the claim lock, before the next claim and once no outcome write's claim
        is under way, so every claim of this pod has either launched its steps or failed:
        held and not running means orphaned. No retry is spent; the handler never started.
        It looks again for ORPHAN_WATCH_S after the last failure, for a claim the database
        finished after the first look.
        """
        running = {running.step.step_id for running in self._executor.running}
        released = await self._store.step_release_orphans(self._state.pod_id, running)
        for step_id, step_type in released:
            metrics.child(metrics.STEPS_RELEASED, step_type).inc()
            log.warning(
                "released %s: claimed by this pod, but its claim's answer was lost", step_id
            )
        now = time.monotonic()
        if now - failed_at >= ORPHAN_WATCH_S:
            self._claim_failed_at = None
        self._next_orphan_sweep = now + ORPHAN_SWEEP_INTERVAL_S

    def next_wait(self) -> float:
        """The poll interval, or less when a scheduled step falls due sooner."""
        due, self._next_due = self._next_due, None
        return self.interval if due is None else min(self.interval, max(due, 0.0))

    async def stop(self) -> None:
        """Stop once a claim in flight has launched its steps. Cancelling it instead could
        abandon a claim the database already committed: steps claimed by this pod that
        nobody runs, until recovery requeues them and spends a retry."""
        async with self._claiming:
            await self._no_write_under_way.wait()
            await super().stop()
