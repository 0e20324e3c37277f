"""The pod's background loops: heartbeat, claiming, health, the NOTIFY wake-up and the
event-loop lag monitor."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fleetq_server import errors, metrics
from fleetq_server.runtime.executor import StepExecutor
from fleetq_server.runtime.loop import BackgroundLoop
from fleetq_server.runtime.state import PodState
from fleetq_server.store.ports import ClaimPort, PodPort, Subscription

log = logging.getLogger(__name__)


class HeartbeatLoop(BackgroundLoop):
    """Refreshes this pod's row and learns who leads; notices being presumed dead.

    The store beats over a connection of its own, so requests holding every pooled
    connection cannot delay it; it runs on the event loop, so a pod whose loop is stuck
    stops beating and is recovered, which is the point of a heartbeat. Requests cannot
    hold the loop (large conversions run off it): fleetq_event_loop_lag_seconds shows
    what it waits.
    """

    name = "heartbeat"

    def __init__(
        self,
        store: PodPort,
        state: PodState,
        interval: float,
        dead_threshold: float,
        on_presumed_dead: Callable[[], Awaitable[None]],
        on_health_change: Callable[[], None],
        on_leadership: Callable[[], None],
    ) -> None:
        super().__init__(interval)
        self._store = store
        self._state = state
        self._dead_threshold = dead_threshold
        self._on_presumed_dead = on_presumed_dead
        self._on_health_change = on_health_change
        self._on_leadership = on_leadership

    async def run_once(self) -> None:
        """One heartbeat. A pod the database no longer lists as up re-registers."""
        try:
            outcome = await self._store.pod_heartbeat(
                self._state.pod_id,
                self._state.current_capacity,
                self._state.max_capacity,
                self._dead_threshold,
            )
        except errors.DatabaseUnavailableError:
            self._set_database_ok(False)
            self._state.is_leader = False
            raise
        self._set_database_ok(True)
        if not outcome.alive and not self._state.draining:
            log.warning("pod %s was presumed dead by the fleet", self._state.pod_id)
            self._state.is_leader = False
            await self._on_presumed_dead()
            return
        was_leader = self._state.is_leader
        self._state.is_leader = outcome.leader_pod_id == self._state.pod_id
        if self._state.is_leader and not was_leader:
            # A new leader recovers the old one's work now, not a recovery interval later.
            self._on_leadership()

    def _set_database_ok(self, ok: bool) -> None:
        # The heartbeat usually sees the database come and go first: publish the change at
        # once, or grpc.health.v1 would lag /health until the next HealthMonitor check.
        if self._state.database_ok != ok:
            self._state.database_ok = ok
            self._on_health_change()


class ClaimLoop(BackgroundLoop):
    """Claims as many steps as there is free capacity, then waits to be woken.

    Woken by a submit NOTIFY, by a finished step freeing a slot, or by the slow poll
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

    async def stop(self) -> None:
        """Stop once a claim in flight has launched its steps. Cancelling it instead could
        abandon a claim the database already committed: steps claimed by this pod that
        nobody runs, until recovery requeues them and spends a retry."""
        async with self._claiming:
            await super().stop()


class HealthMonitor(BackgroundLoop):
    """Pings the database so health reports the truth within `interval` seconds."""

    name = "health"

    def __init__(
        self, store: PodPort, state: PodState, interval: float, on_change: Callable[[], None]
    ) -> None:
        super().__init__(interval)
        self._store = store
        self._state = state
        self._on_change = on_change

    async def run_once(self) -> None:
        """Ping, and publish any change of health."""
        before = self._state.healthy
        try:
            await self._store.ping()
            self._state.database_ok = True
        except errors.DatabaseUnavailableError:
            self._state.database_ok = False
        if self._state.healthy != before:
            log.warning("pod is now %s", "healthy" if self._state.healthy else "unhealthy")
        self._on_change()


class WakeupListener(BackgroundLoop):
    """Keeps the LISTEN connection open; on (re)connect, wakes the claimer once to
    cover notifications missed while disconnected."""

    name = "listener"

    def __init__(
        self, subscription: Subscription, interval: float, on_reconnect: Callable[[], None]
    ) -> None:
        super().__init__(interval)
        self._subscription = subscription
        self._on_reconnect = on_reconnect

    async def run_once(self) -> None:
        """Reconnect if needed."""
        if await self._subscription.ensure():
            self._on_reconnect()

    async def stop(self) -> None:
        """Stop the loop and close the LISTEN connection."""
        await super().stop()
        await self._subscription.close()


class LagMonitor(BackgroundLoop):
    """Measures how late the event loop wakes a timer, into fleetq_event_loop_lag_seconds.

    Any callback that holds the loop (a slow request, a blocking call) shows as lag here:
    the pod is live only as far as this stays small.
    """

    name = "lag-monitor"

    def __init__(self, interval: float) -> None:
        super().__init__(interval)
        self._due: float | None = None

    async def run_once(self) -> None:
        """Record how late this tick is, and when the next one is due."""
        now = asyncio.get_running_loop().time()
        if self._due is not None:
            metrics.EVENT_LOOP_LAG_SECONDS.observe(max(0.0, now - self._due))
        self._due = now + self.interval
