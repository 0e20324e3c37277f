"""The leader's vacuum loop: VACUUM fleetq_steps once enough dead rows have piled up.

Claims read the pending-only claim index from its head, and every claim leaves a dead entry
there until a VACUUM removes it: without one, each claim walks all the entries claimed since
the last vacuum, and a long drain slows bucket after bucket (README "Performance", the
backlog scenario). Autovacuum looks at most once a minute and by default only once a fifth of
the table is dead; the leader, checking the table's statistics every interval, keeps the
index short whatever the autovacuum settings, and whether autovacuum is on at all.
"""

import logging
import time

from fleetq_server import metrics
from fleetq_server.runtime.background import BackgroundLoop
from fleetq_server.runtime.state import PodState
from fleetq_server.store.vacuum import VacuumPort

log = logging.getLogger(__name__)


class VacuumLoop(BackgroundLoop):
    """Every `interval` seconds, if this pod leads, VACUUM fleetq_steps when its dead row
    versions reach `threshold` (0: never). A role that may not vacuum the table is told once
    in the log; the loop keeps looking, and vacuums once the privilege is granted."""

    name = "vacuum"

    def __init__(self, store: VacuumPort, state: PodState, interval: float, threshold: int) -> None:
        super().__init__(interval)
        self._store = store
        self._state = state
        self._threshold = threshold
        self._refused = False

    async def run_once(self) -> None:
        """One look at the statistics, and one VACUUM when due."""
        if self._threshold == 0 or not self._state.acts_as_leader:
            return
        dead, permitted = await self._store.step_dead_rows()
        if not permitted:
            if not self._refused:
                log.warning(
                    "this database role may not VACUUM fleetq_steps (it needs to own the table"
                    " or, on PostgreSQL 17+, the MAINTAIN privilege); claims slow down as dead"
                    " rows pile up until autovacuum removes them"
                )
            self._refused = True
            return
        if self._refused:
            log.info("this database role may VACUUM fleetq_steps now")
            self._refused = False
        if dead < self._threshold:
            return
        started = time.perf_counter()
        await self._store.step_vacuum()
        seconds = time.perf_counter() - started
        metrics.VACUUMS.inc()
        metrics.VACUUM_SECONDS.inc(seconds)
        log.info("vacuumed fleetq_steps (%d dead rows) in %.2f s", dead, seconds)
