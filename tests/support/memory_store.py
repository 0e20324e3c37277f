"""An in-memory store for unit tests: the contract of `fleetq_server.store.ports.StorePort`
without PostgreSQL, so the runtime's loops run in milliseconds.

A test double, not product code: nothing in the server can run on it (no durability, one
process). tests/contract runs one suite against it and against PostgreSQL, so it keeps the
rules the runtime relies on: fencing by (step, pod, attempt), retry or fail, the order of
claims and recovery's accounting. Every call is one "transaction" that runs without an
await, so calls never interleave (as PostgreSQL's row locks make them appear to).

Its clock is the wall clock plus an offset that `advance()` moves, strictly increasing
between calls; within one call `now` stays fixed, like PostgreSQL's `now()`. Setting
`available = False` makes every call fail as an unreachable database does.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections import Counter
from collections.abc import (
    AsyncIterable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fleetq_server import errors
from fleetq_server.store.pods import OTHER_TYPES, QUEUE_STATS_TOP_TYPES
from fleetq_server.store.records import (
    AttemptRecord,
    ClaimedStep,
    HeartbeatOutcome,
    InsertOutcome,
    LeaderView,
    NewStep,
    PodRecord,
    QueueStats,
    RecoveryOutcome,
    RecoveryRecord,
    RecoveryRecordPosition,
    StepListFilter,
    StepListPosition,
    StepOutcome,
    StepRecord,
    ThroughputMinute,
)
from fleetq_server.store.recovery import new_cycle_id
from fleetq_server.store.step_copy import is_plain
from fleetq_server.store.storable import holds_unstorable_text
from fleetq_server.store.throughput import RING_MINUTES
from tests.support.memory_leases import MemoryLeases
from tests.support.memory_schedules import MemorySchedules, _Schedule
from tests.support.memory_type_limits import MemoryTypeLimits, _Limit

_TICK = timedelta(microseconds=1)


@dataclass
class _Step:
    step_id: str
    type: str
    args: dict[str, Any]
    metadata: dict[str, Any]
    priority: int
    max_retries: int
    idempotency_key: str
    client_key: str | None
    payload_hash: str
    created_ts: datetime
    status: str = "pending"
    retry_count: int = 0
    attempt: int = 0
    claimed_by: str | None = None
    claimed_ts: datetime | None = None
    finished_ts: datetime | None = None
    result: Any = None
    error: dict[str, str] | None = None
    pending_expires_at: datetime | None = None
    run_at: datetime | None = None
    traceparent: str | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    cancel_requested_ts: datetime | None = None
    # A worker's leased claim (ClaimSteps) ends then; None for a pod's claim.
    lease_expires_at: datetime | None = None
    last_update_ts: datetime = field(init=False)
    not_before_ts: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.last_update_ts = self.created_ts
        self.not_before_ts = self.created_ts if self.run_at is None else self.run_at


@dataclass
class _Pod:
    pod_id: str
    birth_ts: datetime
    last_heartbeat_ts: datetime
    max_capacity: int
    status: str = "up"
    current_capacity: int = 0
    # The lease the pod declared (None: judged by the reader's threshold).
    expires_at: datetime | None = None

    def lease_end(self, dead_threshold_s: float) -> datetime:
        """store/liveness.py's pod_lease_end."""
        if self.expires_at is not None:
            return self.expires_at
        return self.last_heartbeat_ts + timedelta(seconds=dead_threshold_s)

    def record(self) -> PodRecord:
        return PodRecord(
            self.pod_id,
            self.birth_ts,
            self.last_heartbeat_ts,
            self.status,
            self.current_capacity,
            self.max_capacity,
        )


@dataclass(frozen=True)
class _Cycle:
    outcome: RecoveryOutcome
    leader_pod_id: str
    trigger: str
    started_ts: datetime
    finished_ts: datetime


def _stored(value: Any) -> Any:
    """What jsonb gives back: a copy, or DataRejectedError for text it cannot hold."""
    if holds_unstorable_text(value):
        raise errors.DataRejectedError("the database refused the data")
    return json.loads(json.dumps(value))


class _MemoryListen:
    """The LISTEN connection's life, in memory: `ensure()` connects, `close()` drops it."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.connected = False

    async def ensure(self) -> bool:
        with self._store.transaction():
            if self.connected:
                return False
            self.connected = True
            return True

    async def close(self) -> None:
        self.connected = False


class MemorySubscription(_MemoryListen):
    """Wake-ups delivered by the store's writes, on the next turn of the event loop (as a
    NOTIFY arrives after its commit)."""

    def __init__(
        self,
        store: MemoryStore,
        step_types: Iterable[str],
        on_submit: Callable[[], None],
        on_counts: Callable[[Mapping[str, int] | None], None] | None = None,
    ) -> None:
        super().__init__(store)
        self._step_types = frozenset(step_types)
        self._on_submit = on_submit
        self._on_counts = on_counts

    def notify(self, counts: Mapping[str, int] | None) -> None:
        """New steps by type; None: any type (a release or a requeue)."""
        if not self.connected:
            return
        loop = asyncio.get_running_loop()
        if counts is None or not self._step_types.isdisjoint(counts):
            loop.call_soon(self._on_submit)
        if self._on_counts is not None:
            loop.call_soon(self._on_counts, None if counts is None else dict(counts))


class MemoryChangeSubscription(_MemoryListen):
    """Changes of watched steps, delivered on the next turn of the event loop."""

    def __init__(self, store: MemoryStore, on_change: Callable[[list[str] | None], None]) -> None:
        super().__init__(store)
        self._on_change = on_change

    def notify(self, step_ids: list[str]) -> None:
        if self.connected:
            asyncio.get_running_loop().call_soon(self._on_change, step_ids)


class MemoryCancelSubscription(_MemoryListen):
    """Cancel requests of claimed steps, delivered on the next turn of the event loop."""

    def __init__(self, store: MemoryStore, on_cancel: Callable[[str], None]) -> None:
        super().__init__(store)
        self._on_cancel = on_cancel

    def notify(self, step_id: str) -> None:
        if self.connected:
            asyncio.get_running_loop().call_soon(self._on_cancel, step_id)


class MemoryStore(MemorySchedules, MemoryTypeLimits, MemoryLeases):
    """The store's contract in a few dicts (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: dict[str, _Step] = {}
        self.pods: dict[str, _Pod] = {}
        self.cycles: list[_Cycle] = []
        self.available = True
        # Set by tests to hold the recovery lock, as another pod's running cycle would.
        self.recovery_locked = False
        self._offset = timedelta()
        self._last = datetime.min.replace(tzinfo=UTC)
        self._now = self._last
        self._subscriptions: list[MemorySubscription] = []
        self._cancel_subscriptions: list[MemoryCancelSubscription] = []
        # WatchPort: (step_id, pod_id) pairs, and who hears changes of those steps.
        self.watches: set[tuple[str, str]] = set()
        self._change_subscriptions: list[MemoryChangeSubscription] = []
        self.schedules: dict[str, _Schedule] = {}
        self.type_limits: dict[str, _Limit] = {}
        # Migration 0013's ring: (minute start, "completed" or "failed") -> steps finished.
        self.throughput: Counter[tuple[datetime, str]] = Counter()

    # -- the clock and the "transaction" every call runs in ------------------------------

    def advance(self, seconds: float) -> None:
        """Move the store's clock forward."""
        self._offset += timedelta(seconds=seconds)

    @contextmanager
    def transaction(self) -> Iterator[datetime]:
        """Fail like an unreachable database, or fix `now` for the call."""
        if not self.available:
            raise errors.DatabaseUnavailableError("database unavailable")
        self._now = self._last = max(self._last + _TICK, datetime.now(UTC) + self._offset)
        yield self._now
        # The twin of migration 0006's trigger: every writer stamps last_update_ts = now.
        changed = [
            step_id
            for step_id, _pod in self.watches
            if step_id in self.steps and self.steps[step_id].last_update_ts == self._now
        ]
        if changed:
            for subscription in self._change_subscriptions:
                subscription.notify(sorted(set(changed)))

    def age_heartbeat(self, pod_id: str, seconds: float) -> None:
        """Make a pod look silent for `seconds` (tests/support/backdating.py's twin)."""
        pod = self.pods[pod_id]
        aged = datetime.now(UTC) + self._offset - timedelta(seconds=seconds)
        if pod.expires_at is not None:
            pod.expires_at -= pod.last_heartbeat_ts - aged
        pod.last_heartbeat_ts = aged

    def age_step(self, step_id: str, seconds: float) -> None:
        """Make a step look created (its schedule with it) and finished `seconds` earlier."""
        step = self.steps[step_id]
        step.created_ts -= timedelta(seconds=seconds)
        step.not_before_ts -= timedelta(seconds=seconds)
        if step.finished_ts is not None:
            step.finished_ts -= timedelta(seconds=seconds)

    def age_recovery_records(self, count: int, seconds: float) -> None:
        """Make `count` recovery-cycle records look finished `seconds` ago."""
        ended = datetime.now(UTC) + self._offset - timedelta(seconds=seconds)
        for index, cycle in enumerate(self.cycles[:count]):
            self.cycles[index] = replace(cycle, finished_ts=ended)

    def _live(self, dead_threshold_s: float) -> list[_Pod]:
        """The live pods, eldest first: up, and their lease not ended."""
        live = [
            p
            for p in self.pods.values()
            if p.status == "up" and p.lease_end(dead_threshold_s) > self._now
        ]
        return sorted(live, key=lambda p: (p.birth_ts, p.pod_id))

    def _notify(self, counts: Mapping[str, int] | None) -> None:
        for subscription in self._subscriptions:
            subscription.notify(counts)

    # -- SubmitPort ----------------------------------------------------------------------

    async def step_copy_parts(self, parts: AsyncIterable[Sequence[NewStep]]) -> int | None:
        """As PostgreSQL's COPY: every part, then all of them inserted at once."""
        steps: list[NewStep] = []
        async for part in parts:
            if not all(map(is_plain, part)):
                return None
            steps.extend(part)
        outcomes = await self.step_insert_many(steps)
        return sum(isinstance(o, InsertOutcome) and o.created for o in outcomes)

    async def step_insert_many(
        self, steps: Sequence[NewStep], *, atomic: bool = False
    ) -> list[InsertOutcome | errors.ConflictError]:
        with self.transaction() as now:
            by_key = {s.client_key: s for s in self.steps.values() if s.client_key is not None}
            new: dict[str, _Step] = {}
            for step in steps:
                if step.step_id in self.steps or step.step_id in new:
                    raise errors.DataRejectedError("the database refused the data")
                if step.client_key is not None and step.client_key in by_key:
                    continue
                row = _Step(
                    step.step_id,
                    step.type,
                    _stored(json.loads(step.args_json)),
                    _stored(json.loads(step.metadata_json)),
                    step.priority,
                    step.max_retries,
                    step.idempotency_key,
                    step.client_key,
                    step.payload_hash,
                    created_ts=now,
                    pending_expires_at=(
                        None
                        if step.pending_expiry_s is None
                        else (_scheduled(step, now) or now)
                        + timedelta(seconds=step.pending_expiry_s)
                    ),
                    run_at=_scheduled(step, now),
                    traceparent=step.traceparent,
                )
                new[step.step_id] = row
                if step.client_key is not None:
                    by_key[step.client_key] = row
            outcomes: list[InsertOutcome | errors.ConflictError] = []
            for step in steps:
                if step.step_id in new:
                    outcomes.append(InsertOutcome(step.step_id, created=True))
                    continue
                assert step.client_key is not None
                holder = by_key[step.client_key]
                if holder.payload_hash != step.payload_hash:
                    conflict = errors.ConflictError(
                        "idempotency_key was already used for a different payload "
                        f"(step {holder.step_id})"
                    )
                    if atomic:
                        raise conflict
                    outcomes.append(conflict)
                else:
                    outcomes.append(InsertOutcome(holder.step_id, created=False))
            self.steps.update(new)
            if new:
                self._notify(Counter(row.type for row in new.values()))
        return outcomes

    async def step_get(self, step_id: str) -> StepRecord:
        with self.transaction():
            step = self.steps.get(step_id)
            if step is None:
                raise errors.NotFoundError(f"Step {step_id} not found")
            return self._record(step)

    @staticmethod
    def _record(step: _Step) -> StepRecord:
        return StepRecord(
            step.step_id,
            step.status,
            step.type,
            copy.deepcopy(step.args),
            copy.deepcopy(step.metadata),
            step.priority,
            step.max_retries,
            step.retry_count,
            step.claimed_by,
            step.attempt,
            step.idempotency_key,
            step.created_ts,
            step.last_update_ts,
            copy.deepcopy(step.result),
            copy.deepcopy(step.error),
            step.run_at,
            step.claimed_ts,
            step.cancel_requested_ts is not None,
            tuple(step.attempts),
        )

    # -- ListPort -------------------------------------------------------------------------

    async def step_list_page(
        self, where: StepListFilter, after: StepListPosition | None, limit: int
    ) -> list[StepRecord]:
        with self.transaction():
            found = sorted(
                (s for s in self.steps.values() if _listed(s, where, after)),
                key=lambda s: (s.created_ts, s.step_id),
                reverse=True,
            )
            return [self._record(step) for step in found[:limit]]

    # -- LifecyclePort and CancelPort -----------------------------------------------------

    async def step_cancel(self, step_id: str) -> str:
        with self.transaction() as now:
            step = self.steps.get(step_id)
            if step is None:
                raise errors.NotFoundError(f"Step {step_id} not found")
            if step.status == "pending":
                step.status, step.finished_ts = "cancelled", now
            elif step.status == "claimed":
                for subscription in self._cancel_subscriptions:
                    subscription.notify(step_id)
            elif step.status != "cancelled":
                raise errors.ConflictError(
                    f"Step {step_id} is {step.status}: only pending or claimed steps can be "
                    "cancelled"
                )
            else:
                return "cancelled"
            step.cancel_requested_ts = step.cancel_requested_ts or now
            step.last_update_ts = now
            return step.status

    async def step_retry(self, step_id: str) -> None:
        with self.transaction() as now:
            step = self.steps.get(step_id)
            if step is None:
                raise errors.NotFoundError(f"Step {step_id} not found")
            if step.status not in ("failed", "cancelled"):
                raise errors.ConflictError(
                    f"Step {step_id} is {step.status}: only failed or cancelled steps can be "
                    "retried"
                )
            if step.pending_expires_at is not None:
                step.pending_expires_at = now + (
                    step.pending_expires_at - (step.run_at or step.created_ts)
                )
            step.status, step.retry_count, step.claimed_by = "pending", 0, None
            step.finished_ts = step.cancel_requested_ts = None
            step.not_before_ts = step.last_update_ts = now
            self._notify({step.type: 1})

    async def step_cancels_requested(self, pod_id: str) -> list[str]:
        with self.transaction():
            return [
                s.step_id
                for s in self.steps.values()
                if s.status == "claimed"
                and s.claimed_by == pod_id
                and s.cancel_requested_ts is not None
            ]

    def step_cancel_subscription(
        self, on_cancel: Callable[[str], None]
    ) -> MemoryCancelSubscription:
        subscription = MemoryCancelSubscription(self, on_cancel)
        self._cancel_subscriptions.append(subscription)
        return subscription

    # -- ClaimPort and OutcomePort ------------------------------------------------------

    async def step_insert_claim(
        self, steps: Sequence[NewStep], pod_id: str, step_types: list[str], limit: int
    ) -> tuple[list[InsertOutcome | errors.ConflictError], list[ClaimedStep] | None, bool]:
        outcomes = await self.step_insert_many(steps)
        try:
            claimed = await self.step_claim_batch(pod_id, step_types, limit)
        except errors.DatabaseUnavailableError:  # the insert stands; the claim may not
            return outcomes, None, False
        with self.transaction() as now:
            waiting = any(
                s.status == "pending" and s.type in step_types and s.not_before_ts <= now
                for s in self.steps.values()
            )
        return outcomes, claimed, not waiting

    async def step_claim_batch(
        self, pod_id: str, step_types: list[str], limit: int
    ) -> list[ClaimedStep]:
        with self.transaction() as now:
            claimed = []
            for step in self._claimable(now, pod_id, step_types, limit):
                step.status, step.claimed_by, step.attempt = "claimed", pod_id, step.attempt + 1
                step.claimed_ts = step.last_update_ts = now
                step.lease_expires_at = None
                claimed.append(
                    ClaimedStep(
                        step.step_id,
                        step.type,
                        copy.deepcopy(step.args),
                        copy.deepcopy(step.metadata),
                        step.priority,
                        step.max_retries,
                        step.retry_count,
                        step.attempt,
                        step.idempotency_key,
                        step.created_ts,
                        step.not_before_ts,
                        now,
                    )
                )
            return claimed

    def _claimable(
        self, now: datetime, pod_id: str, step_types: list[str], limit: int
    ) -> list[_Step]:
        """store/claims.py's PICK_CLAIMABLE: the best claimable steps of `step_types` within
        the fleet-wide type limits (their tokens spent), nothing unless `pod_id` is
        registered up."""
        pod = self.pods.get(pod_id)
        if pod is None or pod.status != "up":
            return []
        wanted = set(step_types)
        candidates = sorted(
            (
                s
                for s in self.steps.values()
                if s.status == "pending"
                and s.type in wanted
                and s.not_before_ts <= now
                and (s.pending_expires_at is None or s.pending_expires_at > now)
            ),
            key=lambda s: (-s.priority, s.created_ts, s.step_id),
        )
        return self.within_limits(candidates, max(limit, 0), now)

    async def step_next_due(self, step_types: list[str], since_s: float = 0.0) -> float | None:
        with self.transaction() as now:
            wanted, since = set(step_types), now - timedelta(seconds=since_s)
            due = [
                s.not_before_ts
                for s in self.steps.values()
                if s.status == "pending"
                and s.type in wanted
                and s.not_before_ts > since
                and s.not_before_ts > s.created_ts
            ]
            return (min(due) - now).total_seconds() if due else None

    async def step_release_orphans(
        self, pod_id: str, running_step_ids: Collection[str]
    ) -> list[tuple[str, str]]:
        with self.transaction() as now:
            released = []
            for step in self.steps.values():
                if (
                    step.status == "claimed"
                    and step.claimed_by == pod_id
                    and step.step_id not in running_step_ids
                ):
                    self._release(step, now)
                    released.append((step.step_id, step.type))
            if released:
                self._notify(None)
            return released

    # -- TracePort ------------------------------------------------------------------------

    async def step_traceparent(self, step_id: str) -> str | None:
        with self.transaction():
            step = self.steps.get(step_id)
            return None if step is None else step.traceparent

    # -- WatchPort ------------------------------------------------------------------------

    async def step_watch_add(self, step_id: str, pod_id: str) -> None:
        with self.transaction():
            self.watches.add((step_id, pod_id))

    async def step_watch_remove(self, step_ids: Sequence[str], pod_id: str) -> None:
        with self.transaction():
            self.watches.difference_update((step_id, pod_id) for step_id in step_ids)

    async def step_get_many(self, step_ids: Sequence[str]) -> list[StepRecord]:
        with self.transaction():
            return [self._record(self.steps[i]) for i in set(step_ids) if i in self.steps]

    def step_change_subscription(
        self, on_change: Callable[[list[str] | None], None]
    ) -> MemoryChangeSubscription:
        subscription = MemoryChangeSubscription(self, on_change)
        self._change_subscriptions.append(subscription)
        return subscription

    def _end_execution(
        self,
        step: _Step,
        now: datetime,
        *,
        succeeded: bool,
        outcome: str,
        error: Any = None,
        retryable: bool = True,
    ) -> None:
        """Completed, or retry or fail (fleetq_server/store/rules.py), and the attempt's
        entry (store/step_attempts.py, where it is a row or the step row's own); a failure
        not `retryable` fails at once."""
        step.attempts.append(
            AttemptRecord(step.attempt, step.claimed_by, step.claimed_ts, now, outcome, error)
        )
        cancelled = step.cancel_requested_ts is not None
        retried = (
            not succeeded and retryable and step.retry_count < step.max_retries and not cancelled
        )
        step.status = (
            "cancelled"
            if cancelled
            else "completed"
            if succeeded
            else "pending"
            if retried
            else "failed"
        )
        if retried:
            step.retry_count += 1
            step.claimed_by = None
        step.finished_ts = None if retried else now
        step.last_update_ts = now
        self._count_finished(step.status, now)

    def _count_finished(self, status: str, now: datetime) -> None:
        """The twin of migration 0013's trigger: a step completed or failed now."""
        if status in ("completed", "failed"):
            self.throughput[(_minute(now), status)] += 1

    @staticmethod
    def _release(step: _Step, now: datetime) -> None:
        """steps.release_statement: back to pending, claimable now, no retry spent; the
        attempt ends "released"."""
        step.attempts.append(
            AttemptRecord(step.attempt, step.claimed_by, step.claimed_ts, now, "released", None)
        )
        step.status, step.claimed_by = "pending", None
        step.not_before_ts = step.last_update_ts = now

    async def step_finish_claim(
        self, outcomes: Sequence[StepOutcome], pod_id: str, step_types: list[str], limit: int
    ) -> tuple[list[str | None], list[ClaimedStep]]:
        if not outcomes:
            return [], []
        # The claim first: in the real statement's one snapshot the steps being finished are
        # still claimed, so one that its outcome requeues is never claimed back by it. (Through
        # the class: a test that wraps the instance's methods sees one call, this one.)
        claimed = await MemoryStore.step_claim_batch(self, pod_id, step_types, limit)
        return await MemoryStore.step_finish_many(self, outcomes), claimed

    async def step_finish_many(self, outcomes: Sequence[StepOutcome]) -> list[str | None]:
        with self.transaction() as now:
            stored = [
                (_stored(json.loads(o.result_json or "null")), None)
                if o.error is None
                else (None, _stored(o.error))
                for o in outcomes
            ]
            statuses: list[str | None] = []
            for outcome, (result, error) in zip(outcomes, stored, strict=True):
                step = self.steps.get(outcome.step.step_id)
                if (
                    step is None
                    or step.status != "claimed"
                    or step.attempt != outcome.step.attempt
                    or step.claimed_by != outcome.pod_id
                ):
                    statuses.append(None)
                    continue
                self._end_execution(
                    step,
                    now,
                    succeeded=outcome.error is None,
                    outcome=(
                        "cancelled"
                        if step.cancel_requested_ts is not None
                        else "completed"
                        if outcome.error is None
                        else "failed"
                    ),
                    error=copy.deepcopy(error),
                    retryable=outcome.retryable,
                )
                if outcome.error is not None:
                    step.not_before_ts = now + timedelta(seconds=outcome.backoff_s)
                step.result, step.error = result, error
                statuses.append(step.status)
            return statuses

    # -- PodPort --------------------------------------------------------------------------

    async def pod_register(
        self, pod_id: str, max_capacity: int, lease_s: float | None = None
    ) -> PodRecord:
        with self.transaction() as now:
            pod = self.pods[pod_id] = _Pod(pod_id, now, now, max_capacity)
            pod.expires_at = None if lease_s is None else now + timedelta(seconds=lease_s)
            return pod.record()

    async def pod_heartbeat(
        self, pod_id: str, current_capacity: int, max_capacity: int, dead_threshold_s: float
    ) -> HeartbeatOutcome:
        with self.transaction() as now:
            # The leader as the statement's snapshot sees it: before this beat.
            live = self._live(dead_threshold_s)
            pod = self.pods.get(pod_id)
            alive = pod is not None and pod.status == "up"
            if pod is not None and alive:
                pod.last_heartbeat_ts = now
                pod.expires_at = now + timedelta(seconds=dead_threshold_s)
                pod.current_capacity, pod.max_capacity = current_capacity, max_capacity
            return HeartbeatOutcome(alive, live[0].pod_id if live else None)

    async def pod_mark_down(self, pod_id: str) -> None:
        with self.transaction():
            pod = self.pods.get(pod_id)
            if pod is not None:
                pod.status, pod.current_capacity = "down", 0

    async def step_release(self, steps: list[ClaimedStep], pod_id: str) -> list[str]:
        with self.transaction() as now:
            released = []
            for held in steps:
                step = self.steps.get(held.step_id)
                if (
                    step is not None
                    and step.status == "claimed"
                    and step.attempt == held.attempt
                    and step.claimed_by == pod_id
                ):
                    self._release(step, now)
                    released.append(step.step_id)
            if released:
                self._notify(None)
            return released

    async def ping(self) -> None:
        with self.transaction():
            pass

    def submit_subscription(
        self,
        step_types: Iterable[str],
        on_submit: Callable[[], None],
        on_counts: Callable[[Mapping[str, int] | None], None] | None = None,
    ) -> MemorySubscription:
        subscription = MemorySubscription(self, step_types, on_submit, on_counts)
        self._subscriptions.append(subscription)
        return subscription

    async def close(self) -> None:
        """Nothing to release."""

    # -- RecoveryPort and StatsPort -------------------------------------------------------

    async def pod_next_expiry(self, dead_threshold_s: float) -> float | None:
        with self.transaction() as now:
            ends = [p.lease_end(dead_threshold_s) for p in self.pods.values() if p.status == "up"]
            if not ends:
                return None
            return (min(ends) - now).total_seconds()

    async def leader_get(self, dead_threshold_s: float) -> LeaderView:
        with self.transaction() as now:
            return LeaderView(now, [p.record() for p in self._live(dead_threshold_s)])

    async def queue_stats(
        self, dead_threshold_s: float, top_types: int = QUEUE_STATS_TOP_TYPES
    ) -> QueueStats:
        with self.transaction():
            pending = [s for s in self.steps.values() if s.status == "pending"]
            by_type = sorted(
                Counter(s.type for s in self.steps.values()).items(),
                key=lambda item: (-item[1], item[0]),
            )
            steps_by_type = dict(by_type[:top_types])
            if len(by_type) > top_types:
                steps_by_type[OTHER_TYPES] = sum(n for _, n in by_type[top_types:])
            return QueueStats(
                counts_by_status=dict(Counter(s.status for s in self.steps.values())),
                pending_by_priority=dict(Counter(s.priority for s in pending)),
                steps_by_type=steps_by_type,
                live_pods=[p.record() for p in self._live(dead_threshold_s)],
            )

    async def throughput_list(self, minutes: int) -> list[ThroughputMinute]:
        with self.transaction() as now:
            current = _minute(now)
            series = [current - timedelta(minutes=n) for n in range(minutes - 1, -1, -1)]
            return [
                ThroughputMinute(
                    m, self.throughput[(m, "completed")], self.throughput[(m, "failed")]
                )
                for m in series[-RING_MINUTES:]
            ]

    async def recovery_record_list_page(
        self, after: RecoveryRecordPosition | None, limit: int
    ) -> list[RecoveryRecord]:
        with self.transaction():
            newest_first = sorted(
                self.cycles, key=lambda c: (c.finished_ts, c.outcome.cycle_id), reverse=True
            )
            return [
                RecoveryRecord(c.outcome, c.leader_pod_id, c.trigger, c.started_ts, c.finished_ts)
                for c in newest_first
                if after is None
                or (c.finished_ts, c.outcome.cycle_id) < (after.finished_ts, after.cycle_id)
            ][:limit]

    async def recovery_run(
        self,
        leader_pod_id: str,
        dead_threshold_s: float,
        *,
        dry_run: bool,
        trigger: str,
        min_gap_s: float = 0.0,
    ) -> tuple[RecoveryOutcome, bool]:
        with self.transaction() as now:
            if self.recovery_locked:
                raise errors.RecoveryInProgressError("a recovery cycle is already in progress")
            live = self._live(dead_threshold_s)
            leader = live[0].pod_id if live else None
            if leader != leader_pod_id:
                raise errors.PermissionDeniedError(
                    f"recovery runs only on the leader; current leader is {leader or 'none'}"
                )
            if min_gap_s > 0:
                recent = [c for c in self.cycles if c.finished_ts > now - _seconds(min_gap_s)]
                if recent:
                    return max(recent, key=lambda c: c.finished_ts).outcome, False
            dead = sorted(
                p.pod_id
                for p in self.pods.values()
                if p.status == "up" and p.lease_end(dead_threshold_s) <= now
            )
            orphans = sorted(
                (
                    s
                    for s in self.steps.values()
                    if s.status == "claimed"
                    and s.lease_expires_at is None
                    and not self._held(s, live)
                ),
                key=lambda s: s.step_id,
            )
            requeued = [
                s.step_id
                for s in orphans
                if s.retry_count < s.max_retries and s.cancel_requested_ts is None
            ]
            terminal = [s.step_id for s in orphans if s.step_id not in requeued]
            outcome = RecoveryOutcome(
                cycle_id=new_cycle_id(),
                dead_pods=dead,
                orphaned_steps_found=len(orphans),
                requeued_steps=requeued,
                terminal_steps=terminal,
                duration_ms=0,
                step_types={s.step_id: s.type for s in orphans},
            )
            if dry_run:
                return outcome, True
            for pod_id in dead:
                self.pods[pod_id].status, self.pods[pod_id].current_capacity = "down", 0
            for step in orphans:
                verdict = (
                    "cancelled"
                    if step.cancel_requested_ts is not None
                    else "requeued"
                    if step.retry_count < step.max_retries
                    else "no retries left"
                )
                step.error = {
                    "type": "PodLost",
                    "message": f"pod {step.claimed_by} was lost while running the step; {verdict}",
                }
                self._end_execution(
                    step, now, succeeded=False, outcome="pod_lost", error=dict(step.error)
                )
                step.not_before_ts = now
            if requeued:
                self._notify(None)
            stored = RecoveryOutcome(
                outcome.cycle_id, dead, len(orphans), requeued, terminal, duration_ms=0
            )
            self.cycles.append(_Cycle(stored, leader_pod_id, trigger, now, now))
            return outcome, True

    @staticmethod
    def _held(step: _Step, live: list[_Pod]) -> bool:
        """Whether the live incarnation of its pod that claimed it still holds `step`."""
        return any(
            pod.pod_id == step.claimed_by
            and (step.claimed_ts is None or pod.birth_ts <= step.claimed_ts)
            for pod in live
        )

    # -- RetentionPort -------------------------------------------------------------------

    async def step_delete_finished_before(self, age_s: float, limit: int) -> int:
        return self._delete_oldest(
            self.steps,
            lambda s: s.status in ("completed", "failed", "cancelled"),
            lambda s: s.finished_ts,
            age_s,
            limit,
        )

    async def recovery_record_delete_before(self, age_s: float, limit: int) -> int:
        with self.transaction() as now:
            old = sorted(
                (c for c in self.cycles if c.finished_ts < now - _seconds(age_s)),
                key=lambda c: c.finished_ts,
            )[:limit]
            for cycle in old:
                self.cycles.remove(cycle)
            return len(old)

    async def step_expire_pending(self, limit: int) -> int:
        with self.transaction() as now:
            due = sorted(
                (
                    s
                    for s in self.steps.values()
                    if s.status == "pending"
                    and s.pending_expires_at is not None
                    and s.pending_expires_at <= now
                ),
                key=lambda s: s.pending_expires_at or now,
            )[: max(limit, 0)]
            for step in due:
                step.status, step.finished_ts, step.last_update_ts = "failed", now, now
                self._count_finished(step.status, now)
                step.error = {
                    "type": "expired",
                    "message": "the step was still pending at its expiry",
                }
            return len(due)

    async def pod_delete_down_before(self, age_s: float, limit: int) -> int:
        return self._delete_oldest(
            self.pods, lambda p: p.status == "down", lambda p: p.last_heartbeat_ts, age_s, limit
        )

    def _delete_oldest(
        self,
        table: dict[str, Any],
        finished: Callable[[Any], bool],
        since: Callable[[Any], datetime | None],
        age_s: float,
        limit: int,
    ) -> int:
        with self.transaction() as now:
            cutoff = now - _seconds(age_s)
            old = [
                key
                for key, row in table.items()
                if finished(row) and (ts := since(row)) is not None and ts < cutoff
            ]
            old.sort(key=lambda key: since(table[key]) or cutoff)
            for key in old[:limit]:
                del table[key]
            return len(old[:limit])

    # -- VacuumPort: nothing in memory leaves dead rows ------------------------------------

    async def step_dead_rows(self) -> tuple[int, bool]:
        return 0, True

    async def step_vacuum(self) -> bool:
        return True


def _listed(step: _Step, where: StepListFilter, after: StepListPosition | None) -> bool:
    """Whether a listing page filtered by `where`, after `after`, holds `step`."""
    return (
        (not where.statuses or step.status in where.statuses)
        and (where.type is None or step.type == where.type)
        and (where.created_after is None or step.created_ts >= where.created_after)
        and (where.created_before is None or step.created_ts < where.created_before)
        and (where.idempotency_key is None or step.client_key == where.idempotency_key)
        and (after is None or (step.created_ts, step.step_id) < (after.created_ts, after.step_id))
    )


def _scheduled(step: NewStep, now: datetime) -> datetime | None:
    """A new step's run_at: its own, or `delay_s` after the insert."""
    if step.run_at is not None:
        return step.run_at
    return None if step.delay_s is None else now + timedelta(seconds=step.delay_s)


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _seconds(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)
