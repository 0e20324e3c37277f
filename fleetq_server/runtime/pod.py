"""A pod: registration, its loops, re-registration when fenced, graceful shutdown."""

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from fleetq_server import errors, metrics
from fleetq_server.config import Settings
from fleetq_server.handlers import HandlerRegistry
from fleetq_server.logs import set_log_pod_id
from fleetq_server.runtime import claims_ahead
from fleetq_server.runtime.background import BackgroundLoop
from fleetq_server.runtime.cancellation import CancelListener
from fleetq_server.runtime.claimer import ClaimLoop
from fleetq_server.runtime.executor import StepExecutor
from fleetq_server.runtime.health import HealthMonitor
from fleetq_server.runtime.heartbeat import HeartbeatLoop
from fleetq_server.runtime.lag_monitor import LagMonitor
from fleetq_server.runtime.lease_expiry import LeaseExpiryLoop
from fleetq_server.runtime.listener import WakeupListener
from fleetq_server.runtime.recovery import RecoveryLoop
from fleetq_server.runtime.remote_claims import RemoteClaims
from fleetq_server.runtime.retention import RetentionLoop
from fleetq_server.runtime.retry_policy import RetryPolicy
from fleetq_server.runtime.scheduler import ScheduleLoop
from fleetq_server.runtime.state import PodState
from fleetq_server.runtime.vacuum import VacuumLoop
from fleetq_server.runtime.watch import StepWatchHub
from fleetq_server.schedule_file import load as load_schedules_file
from fleetq_server.schedule_file import reconcile as reconcile_schedules_file
from fleetq_server.store.ports import StorePort

if TYPE_CHECKING:
    from fleetq_server.telemetry.tracing import Tracing

log = logging.getLogger(__name__)

# How often health is re-checked against the database, and the LISTEN connection repaired.
HEALTH_CHECK_INTERVAL_S = 1.0
LISTENER_CHECK_INTERVAL_S = 1.0
# How often the event loop's lag is sampled: fine enough to see a stall of a few ticks.
LAG_SAMPLE_INTERVAL_S = 0.1


class Pod:
    """Owns the pod's state and background loops."""

    def __init__(
        self,
        settings: Settings,
        store: StorePort,
        registry: HandlerRegistry,
        on_health_change: Callable[[], None] = lambda: None,
        tracing: "Tracing | None" = None,
    ) -> None:
        self.settings = settings
        # OpenTelemetry (fleetq_server.telemetry); None: off, and nothing is traced.
        self.tracing = tracing
        self.store = store
        self.registry = registry
        self.state = PodState(base_pod_id=settings.pod_id, max_capacity=settings.max_capacity)
        metrics.track_pod_state(self.state)
        self._on_health_change = on_health_change
        # Claims ahead, made by outcome writes, at small capacities only (claims_ahead.py).
        ahead = settings.prefetch_claims and settings.max_capacity <= claims_ahead.MAX_CAPACITY
        self.executor = StepExecutor(
            store,
            registry,
            self.state,
            RetryPolicy(settings.retry_backoff_base, settings.retry_backoff_max),
            on_slot_free=lambda: self.claimer.slot_freed(),
            on_requeued=lambda: self.claimer.wake(),
            tracing=tracing,
            prefetch=ahead,
            finish=(lambda done: self.claimer.finish_and_claim(done)) if ahead else None,
        )
        self.claimer = ClaimLoop(
            store,
            self.state,
            self.executor,
            registry.step_types,
            settings.poll_interval,
            outcomes_claim=ahead,
        )
        self.heartbeat = HeartbeatLoop(
            store,
            self.state,
            settings.heartbeat_interval,
            settings.dead_pod_threshold,
            on_presumed_dead=self._reregister,
            on_health_change=on_health_change,
            on_leadership=self._on_leadership,
        )
        self.health = HealthMonitor(
            store, self.state, HEALTH_CHECK_INTERVAL_S, on_change=on_health_change
        )
        self.recovery = RecoveryLoop(
            store,
            self.state,
            settings.recovery_interval,
            settings.dead_pod_threshold,
            on_expiry=settings.recovery_on_expiry,
        )
        self.retention = RetentionLoop(
            store,
            self.state,
            settings.retention_interval,
            settings.retention,
            worker_retention_s=settings.worker_retention,
        )
        self.vacuum = VacuumLoop(
            store, self.state, settings.vacuum_interval, settings.vacuum_threshold
        )
        self.scheduler = ScheduleLoop(
            store, self.state, settings.schedule_interval, settings.pending_expiry
        )
        self.lag = LagMonitor(LAG_SAMPLE_INTERVAL_S)
        # WatchStep's streams; its periodic re-read is a safety net like the claim poll's.
        self.watches = StepWatchHub(store, self.state, settings.poll_interval)
        self.cancels = CancelListener(store, self.state, self.executor, settings.poll_interval)
        # Leased claims (ClaimSteps): the leader expires ended leases on the recovery
        # loop's schedule; long polls wake on the claim loop's own LISTEN connection.
        self.lease_expiry = LeaseExpiryLoop(store, self.state, settings.recovery_interval)
        subscription = store.submit_subscription(
            registry.step_types, on_submit=self.claimer.wake, on_counts=self._on_submit_counts
        )
        self.claimer.listening = lambda: subscription.connected
        self.remote_claims = RemoteClaims(
            store, self.state, settings.poll_interval, listening=lambda: subscription.connected
        )
        self.listener = WakeupListener(
            subscription, LISTENER_CHECK_INTERVAL_S, on_reconnect=self._on_listen_reconnect
        )

    @property
    def loops(self) -> list[BackgroundLoop]:
        """Every background loop, in start order."""
        return [
            self.lag,
            self.heartbeat,
            self.health,
            self.listener,
            self.claimer,
            self.recovery,
            self.lease_expiry,
            self.retention,
            self.vacuum,
            self.scheduler,
            self.watches,
            self.cancels,
        ]

    def _on_leadership(self) -> None:
        """Just became leader: recover dead pods' steps, expire ended leases and fire due
        ticks now, not an interval later."""
        self.recovery.wake()
        self.lease_expiry.wake()
        self.scheduler.wake()

    def _on_submit_counts(self, counts: Mapping[str, int] | None) -> None:
        self.remote_claims.notify(counts)

    def _on_listen_reconnect(self) -> None:
        """Notifications may have been missed while disconnected: everyone looks again."""
        self.claimer.wake()
        self.remote_claims.notify(None)

    async def start(self) -> None:
        """Reconcile the schedules file, register, learn the leader, start every loop."""
        if self.settings.schedules_file is not None:
            declared = load_schedules_file(self.settings.schedules_file)
            deleted = await reconcile_schedules_file(self.store, declared)
            log.info(
                "schedules file: %d schedules and %d limits declared; deleted: %s",
                len(declared.schedules),
                len(declared.limits),
                ", ".join(deleted) or "none",
            )
        await self.store.pod_register(
            self.state.pod_id, self.state.max_capacity, self.settings.dead_pod_threshold
        )
        self.state.database_ok = True
        await self.heartbeat.run_once()
        self._on_health_change()
        log.info(
            "pod %s started (capacity %d, step types %s)",
            self.state.pod_id,
            self.state.max_capacity,
            ", ".join(self.registry.step_types),
        )
        for loop in self.loops:
            loop.start()

    async def _reregister(self) -> None:
        """Presumed dead: drop in-flight work unwritten, come back as a new pod.

        Our claims were (or will be) requeued by the leader, so finishing them here would
        only race the new owners; fencing would reject the writes anyway.
        """
        self.state.fenced = True
        abandoned = await self.executor.cancel_all()
        new_id = self.state.next_incarnation_id()
        await self.store.pod_register(
            new_id, self.state.max_capacity, self.settings.dead_pod_threshold
        )
        log.warning(
            "re-registered as %s (was %s); abandoned %d running steps",
            new_id,
            self.state.pod_id,
            len(abandoned),
        )
        self.state.pod_id = new_id
        set_log_pod_id(new_id)
        self.state.is_leader = False
        self.state.fenced = False
        self.claimer.wake()

    async def shutdown(self, grace: float) -> None:
        """Drain: stop claiming, give running steps `grace` seconds, release the rest
        to pending without spending a retry, and mark the pod down. Once: a pod already
        draining returns at once (the composition root may ask twice, see server.py)."""
        if self.state.draining:
            return
        self.state.draining = True
        self._on_health_change()
        self.remote_claims.notify(None)  # long polls answer now, with nothing
        await self.claimer.stop()
        await self.recovery.stop()
        await self.lease_expiry.stop()
        await self.retention.stop()
        await self.vacuum.stop()
        await self.scheduler.stop()
        # Steps claimed ahead that have not started go back now, for other pods to run.
        unstarted = await self.executor.cancel_waiting()
        log.info("draining %d running steps (grace %gs)", self.state.current_capacity, grace)
        await self.executor.wait_all(grace)
        stopped = unstarted + await self.executor.cancel_all()
        try:
            held = [r.step for r in stopped if r.claim_pod_id == self.state.pod_id]
            released = set(await self.store.step_release(held, self.state.pod_id))
            for step in held:
                if step.step_id in released:
                    metrics.STEPS_RELEASED.labels(step.type).inc()
            if released:
                log.info("released %d unfinished steps back to pending", len(released))
            await self.store.pod_mark_down(self.state.pod_id)
        except errors.DatabaseUnavailableError:
            # The leader's recovery requeues them once our heartbeat goes stale.
            log.error("database unavailable at shutdown; recovery will requeue our steps")
        loops = (self.cancels, self.watches, self.listener, self.health, self.heartbeat, self.lag)
        for loop in loops:
            await loop.stop()
        self.executor.close()
