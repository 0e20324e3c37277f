"""The leader's schedule loop: fires each due tick of the periodic schedules as a step.

A tick's step carries the idempotency key `schedule:<name>:<tick time>`, and the schedule
moves past the tick by a compare-and-set on its next tick. So a tick fires at most once
whoever fires it: a new leader, or two pods that briefly both think they lead, insert the
same key, and the second insert resolves to the first step.
"""

import logging
from datetime import datetime

from fleetq_server import errors, metrics, scheduling, submission
from fleetq_server.runtime.background import BackgroundLoop
from fleetq_server.runtime.state import PodState
from fleetq_server.store.ports import ScheduleFirePort
from fleetq_server.store.records import ScheduleRecord

log = logging.getLogger(__name__)

# Due schedules handled per iteration; a full batch runs the next one at once.
BATCH_SIZE = 100


class ScheduleLoop(BackgroundLoop):
    """Every `interval` seconds at most (sooner when a schedule falls due first), if this
    pod leads, fire the due ticks."""

    name = "scheduler"

    def __init__(
        self,
        store: ScheduleFirePort,
        state: PodState,
        interval: float,
        pending_expiry_s: float = 0.0,
    ) -> None:
        super().__init__(interval)
        self._store = store
        self._state = state
        self._pending_expiry_s = pending_expiry_s
        self._wait = interval

    def next_wait(self) -> float:
        """Until the next schedule falls due, at most the interval."""
        return self._wait

    async def run_once(self) -> None:
        """Fire what is due (a no-op unless this pod leads), then learn when to look next."""
        self._wait = self.interval
        if not self._state.acts_as_leader:
            return
        now, due = await self._store.schedule_list_due(BATCH_SIZE)
        for schedule in due:
            if not self._state.acts_as_leader:
                return
            await self._fire(schedule, now)
        if len(due) == BATCH_SIZE:
            self.wake()
            return
        until = await self._store.schedule_next_due()
        if until is not None:
            self._wait = min(self.interval, max(until, 0.0) + 0.001)

    async def _fire(self, schedule: ScheduleRecord, now: datetime) -> None:
        spec = schedule.spec
        assert schedule.next_fire_ts is not None
        plan = scheduling.plan(schedule, now)
        fired: tuple[datetime, str] | None = None
        if plan.tick is not None:
            step_id = await self._insert(schedule, plan.tick)
            if step_id is not None:
                fired = (plan.tick, step_id)
        moved = await self._store.schedule_advance(
            spec.name, schedule.next_fire_ts, plan.next_fire_ts, fired
        )
        if plan.skipped is not None:
            metrics.SCHEDULE_TICKS.labels(f"skipped_{plan.skipped}").inc()
            log.info("schedule %s skipped a tick (%s)", spec.name, plan.skipped)
        if not moved:
            log.info("schedule %s was moved on by another pod or changed", spec.name)

    async def _insert(self, schedule: ScheduleRecord, tick: datetime) -> str | None:
        """Insert the tick's step; its id (that of an earlier insert of the same tick on a
        repeat), or None when the key holds a step of another template (the schedule
        changed after that tick fired) or the step was refused."""
        spec = schedule.spec
        request = scheduling.tick_request(spec, tick, self._pending_expiry_s)
        try:
            step = submission.prepare_step(request)
        except errors.ValidationError as exc:  # validated on write: only if rules changed
            log.error("schedule %s cannot fire: %s", spec.name, exc)
            return None
        (outcome,) = await self._store.step_insert_many([step])
        if isinstance(outcome, errors.ConflictError):
            log.info("schedule %s tick %s already fired", spec.name, tick)
            return None
        if outcome.created:
            metrics.count_submitted(step.type, scheduled=False)
            metrics.SCHEDULE_TICKS.labels("fired").inc()
        return outcome.step_id
