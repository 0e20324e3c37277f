"""The heartbeat: this pod's lease on life, and who leads."""

import logging
from collections.abc import Awaitable, Callable

from fleetq_server import errors
from fleetq_server.runtime.background import BackgroundLoop
from fleetq_server.runtime.state import PodState
from fleetq_server.store.ports import PodPort

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
