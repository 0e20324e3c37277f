"""GET /metrics: the Prometheus exposition, with queue depth refreshed when scraped.

Queue depth comes from the store's queue statistics at most every QUEUE_DEPTH_MAX_AGE_S,
however often or concurrently Prometheus scrapes, and never while nobody scrapes. A
scrape never waits long on the database: past QUEUE_DEPTH_TIMEOUT_S (or with the
database down) the queue gauges are dropped rather than reported stale, and every other
metric is served as usual.
"""

import asyncio
import logging
import math
import time

from prometheus_client import make_asgi_app

from fleetq_server import errors, metrics
from fleetq_server.gateway.asgi import Receive, Scope, Send
from fleetq_server.store.ports import StatsPort

log = logging.getLogger(__name__)

QUEUE_DEPTH_MAX_AGE_S = 2.0
QUEUE_DEPTH_TIMEOUT_S = 1.0
STEP_STATUSES = ("pending", "claimed", "completed", "failed")


class MetricsEndpoint:
    """ASGI app serving the default registry, queue depth included."""

    def __init__(self, store: StatsPort, dead_threshold_s: float) -> None:
        self._store = store
        self._dead_threshold_s = dead_threshold_s
        self._exposition = make_asgi_app()
        self._lock = asyncio.Lock()
        self._refreshed_at = -math.inf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._refresh_queue_depth()
        await self._exposition(scope, receive, send)

    async def _refresh_queue_depth(self) -> None:
        async with self._lock:  # concurrent scrapes share one read
            if time.monotonic() - self._refreshed_at < QUEUE_DEPTH_MAX_AGE_S:
                return
            # Counted from the attempt, so a failing database is not asked on every scrape.
            self._refreshed_at = time.monotonic()
            try:
                async with asyncio.timeout(QUEUE_DEPTH_TIMEOUT_S):
                    stats = await self._store.queue_stats(self._dead_threshold_s)
            except (TimeoutError, errors.DatabaseUnavailableError) as exc:
                log.warning("queue depth not refreshed: %s", exc or type(exc).__name__)
                metrics.QUEUE_STEPS.clear()
                return
            for status in STEP_STATUSES:
                metrics.QUEUE_STEPS.labels(status).set(stats.counts_by_status.get(status, 0))
            await self._refresh_type_limits()

    async def _refresh_type_limits(self) -> None:
        """Each limited type's claimed steps and limits (types whose limit went, gone)."""
        try:
            async with asyncio.timeout(QUEUE_DEPTH_TIMEOUT_S):
                records = await self._store.type_limit_list()
        except (TimeoutError, errors.DatabaseUnavailableError) as exc:
            log.warning("type limits not refreshed: %s", exc or type(exc).__name__)
            records = []
        gauges = (
            metrics.TYPE_LIMIT_IN_FLIGHT,
            metrics.TYPE_LIMIT_MAX_CONCURRENCY,
            metrics.TYPE_LIMIT_RATE,
        )
        for gauge in gauges:
            gauge.clear()
        for record in records:
            step_type, limit = record.limit.step_type, record.limit
            metrics.TYPE_LIMIT_IN_FLIGHT.labels(step_type).set(record.in_flight)
            if limit.max_concurrency is not None:
                metrics.TYPE_LIMIT_MAX_CONCURRENCY.labels(step_type).set(limit.max_concurrency)
            if limit.rate_per_second is not None:
                metrics.TYPE_LIMIT_RATE.labels(step_type).set(limit.rate_per_second)
