"""The leader's lease expiry: leased steps whose worker stopped extending them go back to
pending with a retry spent, or fail as `lease_expired` past their retry budget."""

import logging

from fleetq_server import metrics
from fleetq_server.runtime.background import BackgroundLoop, until_due
from fleetq_server.runtime.state import PodState
from fleetq_server.store.ports import LeaseExpiryPort

log = logging.getLogger(__name__)

# Leases expired per statement; a larger backlog is taken at once by the next iterations.
EXPIRY_BATCH = 1000
# Wake this long after the earliest lease ends, so the database clock is past it.
EXPIRY_MARGIN_S = 0.05
MIN_WAIT_S = 0.1


class LeaseExpiryLoop(BackgroundLoop):
    """On the leader, every `interval` seconds and the moment the earliest lease ends:
    the time budget of a dead pod's requeue (its recovery interval and expiry timer)."""

    name = "lease_expiry"

    def __init__(self, store: LeaseExpiryPort, state: PodState, interval: float) -> None:
        super().__init__(interval)
        self._store = store
        self._state = state
        self._until_expiry: float | None = None

    def next_wait(self) -> float:
        """The interval, or less when a lease ends sooner."""
        return until_due(self.interval, self._until_expiry, EXPIRY_MARGIN_S, MIN_WAIT_S)

    async def run_once(self) -> None:
        """Expire every ended lease (if this pod leads), then learn when the next ends."""
        self._until_expiry = None
        if not self._state.is_leader or self._state.draining or self._state.fenced:
            return
        while True:
            expired = await self._store.step_lease_expire(EXPIRY_BATCH)
            for lease in expired:
                outcome = "requeued" if lease.status == "pending" else "failed"
                metrics.LEASES_EXPIRED.labels(lease.type, outcome).inc()
            if expired:
                log.warning(
                    "expired %d leases: %d requeued, %d failed",
                    len(expired),
                    sum(lease.status == "pending" for lease in expired),
                    sum(lease.status == "failed" for lease in expired),
                )
            if len(expired) < EXPIRY_BATCH:
                break
        self._until_expiry = await self._store.step_lease_next_expiry()
