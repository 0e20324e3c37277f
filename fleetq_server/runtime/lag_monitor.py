"""The event-loop lag monitor."""

import asyncio

from fleetq_server import metrics
from fleetq_server.runtime.background import BackgroundLoop


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
