"""The health monitor: the pod's health follows the database within a second."""

import logging
from collections.abc import Callable

from fleetq_server import errors
from fleetq_server.runtime.background import BackgroundLoop
from fleetq_server.runtime.state import PodState
from fleetq_server.store.ports import PodPort

log = logging.getLogger(__name__)


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
