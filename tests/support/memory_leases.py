"""The in-memory twin of store/step_leases.py (LeasePort, LeaseExpiryPort), mixed into
MemoryStore: leased claims, their fenced outcomes, extensions and expiry, and the workers'
roster. tests/contract checks it against PostgreSQL."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fleetq_server import errors
from fleetq_server.store.records import (
    ExpiredLease,
    LeasedStep,
    LeaseExtension,
    LeaseOutcome,
    WorkerRecord,
)
from fleetq_server.store.step_leases import lease_refusal

if TYPE_CHECKING:
    from contextlib import AbstractContextManager


@dataclass
class _Worker:
    worker_id: str
    types: list[str]
    last_seen_ts: datetime


def _refusal(step_id: str, attempt: int, step: Any) -> errors.FleetQError:
    """The store's own words for a refused write."""
    if step is None:
        return lease_refusal(step_id, attempt, None)
    row = {
        "status": step.status,
        "attempt": step.attempt,
        "claimed_by": step.claimed_by,
        "lease_expires_at": step.lease_expires_at,
    }
    return lease_refusal(step_id, attempt, row)


class MemoryLeases:
    """Leases over MemoryStore's steps (see the module docstring)."""

    steps: dict[str, Any]

    if TYPE_CHECKING:

        def transaction(self) -> AbstractContextManager[datetime]: ...
        def _end_execution(
            self,
            step: Any,
            now: datetime,
            *,
            succeeded: bool,
            outcome: str,
            error: Any = None,
            retryable: bool = True,
        ) -> None: ...
        @staticmethod
        def _release(step: Any, now: datetime) -> None: ...
        def _notify(self, counts: Mapping[str, int] | None) -> None: ...
        def _delete_oldest(
            self,
            table: dict[str, Any],
            finished: Callable[[Any], bool],
            since: Callable[[Any], datetime | None],
            age_s: float,
            limit: int,
        ) -> int: ...
        def _claimable(
            self, now: datetime, pod_id: str, step_types: list[str], limit: int
        ) -> list[Any]: ...

    def __init__(self) -> None:
        self.workers: dict[str, _Worker] = {}

    def _holding(self, step: Any, attempt: int, now: datetime) -> bool:
        return (
            step is not None
            and step.status == "claimed"
            and step.attempt == attempt
            and step.lease_expires_at is not None
            and step.lease_expires_at > now
        )

    async def worker_delete_unseen_before(self, age_s: float, limit: int) -> int:
        leasing = {
            step.claimed_by
            for step in self.steps.values()
            if step.status == "claimed" and step.lease_expires_at is not None
        }
        return self._delete_oldest(
            self.workers,
            lambda w: w.worker_id not in leasing,
            lambda w: w.last_seen_ts,
            age_s,
            limit,
        )

    def age_worker(self, worker_id: str, seconds: float) -> None:
        """Make a worker look last seen `seconds` earlier."""
        self.workers[worker_id].last_seen_ts -= timedelta(seconds=seconds)

    async def step_lease_claim(
        self, pod_id: str, worker_id: str, step_types: list[str], limit: int, lease_s: float
    ) -> list[LeasedStep]:
        with self.transaction() as now:
            self.workers[worker_id] = _Worker(worker_id, list(step_types), now)
            leased = []
            for step in self._claimable(now, pod_id, step_types, limit):
                step.status, step.claimed_by, step.attempt = "claimed", worker_id, step.attempt + 1
                step.claimed_ts = step.last_update_ts = now
                step.lease_expires_at = now + timedelta(seconds=lease_s)
                leased.append(
                    LeasedStep(
                        step.step_id,
                        step.type,
                        copy.deepcopy(step.args),
                        copy.deepcopy(step.metadata),
                        step.priority,
                        step.max_retries,
                        step.retry_count,
                        step.attempt,
                        step.idempotency_key,
                        step.lease_expires_at,
                    )
                )
            return leased

    async def step_lease_finish_many(
        self, outcomes: Sequence[LeaseOutcome], backoffs: Sequence[float]
    ) -> list[str | errors.FleetQError]:
        with self.transaction() as now:
            answers: list[str | errors.FleetQError] = []
            for outcome in outcomes:
                step = self.steps.get(outcome.step_id)
                if not self._holding(step, outcome.attempt, now):
                    answers.append(_refusal(outcome.step_id, outcome.attempt, step))
                    continue
                succeeded = outcome.error is None
                word = (
                    "cancelled"
                    if step.cancel_requested_ts is not None
                    else "completed"
                    if succeeded
                    else "failed"
                )
                error = None if succeeded else dict(outcome.error or {})
                self._end_execution(
                    step,
                    now,
                    succeeded=succeeded,
                    outcome=word,
                    error=copy.deepcopy(error),
                    retryable=outcome.retryable,
                )
                step.lease_expires_at = None
                if succeeded:
                    step.result = json.loads(outcome.result_json or "null")
                    step.error = None
                else:
                    step.result, step.error = None, dict(outcome.error or {})
                    if step.status == "pending":
                        index = step.retry_count - 1
                        delay = backoffs[index] if index < len(backoffs) else 0.0
                        step.not_before_ts = now + timedelta(seconds=delay)
                answers.append(step.status)
            return answers

    async def step_lease_extend(self, step_id: str, attempt: int, lease_s: float) -> LeaseExtension:
        with self.transaction() as now:
            step = self.steps.get(step_id)
            if not self._holding(step, attempt, now):
                raise _refusal(step_id, attempt, step)
            step.lease_expires_at = now + timedelta(seconds=lease_s)
            worker = self.workers.get(step.claimed_by)
            if worker is not None:
                worker.last_seen_ts = now
            return LeaseExtension(step.lease_expires_at, step.cancel_requested_ts is not None)

    async def step_lease_release(
        self, held: Sequence[tuple[str, int]]
    ) -> list[str | errors.FleetQError]:
        with self.transaction() as now:
            answers: list[str | errors.FleetQError] = []
            for step_id, attempt in held:
                step = self.steps.get(step_id)
                if not self._holding(step, attempt, now):
                    answers.append(_refusal(step_id, attempt, step))
                    continue
                self._release(step, now)
                step.lease_expires_at = None
                answers.append("pending")
            if "pending" in answers:
                self._notify(None)
            return answers

    def _leased(self, now: datetime) -> Iterator[Any]:
        return (
            s
            for s in self.steps.values()
            if s.status == "claimed" and s.lease_expires_at is not None
        )

    async def step_lease_expire(self, limit: int) -> list[ExpiredLease]:
        with self.transaction() as now:
            due = sorted(
                (s for s in self._leased(now) if s.lease_expires_at <= now),
                key=lambda s: s.lease_expires_at,
            )[: max(limit, 0)]
            expired = []
            for step in due:
                worker, attempt = step.claimed_by, step.attempt
                verdict = "requeued" if step.retry_count < step.max_retries else "no retries left"
                error = {
                    "type": "lease_expired",
                    "message": f"the lease of worker {worker} on attempt {attempt} expired;"
                    f" {verdict}",
                }
                self._end_execution(
                    step, now, succeeded=False, outcome="lease_expired", error=dict(error)
                )
                step.not_before_ts, step.lease_expires_at = now, None
                step.error = error
                expired.append(ExpiredLease(step.step_id, step.type, step.status))
            if any(lease.status == "pending" for lease in expired):
                self._notify(None)
            return expired

    async def step_lease_next_expiry(self) -> float | None:
        with self.transaction() as now:
            ends = [s.lease_expires_at for s in self._leased(now)]
            return (min(ends) - now).total_seconds() if ends else None

    async def worker_list(self, seen_within_s: float, limit: int) -> list[WorkerRecord]:
        with self.transaction() as now:
            held: dict[str, int] = {}
            for step in self._leased(now):
                held[step.claimed_by] = held.get(step.claimed_by, 0) + 1
            listed = [
                WorkerRecord(worker_id, list(w.types), held.get(worker_id, 0), w.last_seen_ts)
                for worker_id, w in self.workers.items()
                if w.last_seen_ts > now - timedelta(seconds=seen_within_s) or worker_id in held
            ]
            listed.sort(key=lambda w: (-w.last_seen_ts.timestamp(), w.worker_id))
            return listed[:limit]
