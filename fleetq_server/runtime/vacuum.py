"""The leader's vacuum loop: VACUUM fleetq_steps once enough dead rows have piled up.

Claims read the pending-only claim index from its head, and every claim leaves a dead entry
there until a VACUUM removes it: without one, each claim walks past the entries claimed since
the last vacuum, and a long drain slows bucket after bucket (README "Performance", the
backlog scenario). Autovacuum visits once a minute by default and by default waits for a
fifth of the table to be dead. The leader reads the table's dead-row count every interval and
vacuums at the threshold, so that autovacuum's settings, or autovacuum being off, no longer
decide how long the index grows: about `threshold` dead entries, plus what the statistics
have not counted yet (they lag, need track_counts on, and start again from zero after a
crash). Only when its database role may vacuum the table; a VACUUM finding the table
locked by another (autovacuum's) skips it, and the next look tries again.
"""

import logging
import time

from fleetq_server import metrics
from fleetq_server.runtime.background import BackgroundLoop
from fleetq_server.runtime.state import PodState
from fleetq_server.store.vacuum import VacuumPort

log = logging.getLogger(__name__)


class VacuumLoop(BackgroundLoop):
    """Every `interval` seconds, if this pod acts as leader, VACUUM fleetq_steps when the
    statistics count `threshold` dead row versions (0: never). A role that may not vacuum
    the table is told in the log, once until that changes; the loop keeps looking, and
    vacuums once the privilege is granted."""

    name = "vacuum"

    def __init__(self, store: VacuumPort, state: PodState, interval: float, threshold: int) -> None:
        super().__init__(interval)
        self._store = store
        self._state = state
        self._threshold = threshold
        self._refused = False

    async def run_once(self) -> None:
        """One look at the statistics, and one VACUUM when due (counted only if it ran)."""
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
        if not await self._store.step_vacuum():
            log.info("VACUUM of fleetq_steps skipped: another VACUUM holds the table")
            return
        seconds = time.perf_counter() - started
        metrics.VACUUMS.inc()
        metrics.VACUUM_SECONDS.inc(seconds)
        log.info("vacuumed fleetq_steps (%d dead rows) in %.2f s", dead, seconds)
