"""The in-memory twin of store/type_limits.py, mixed into MemoryStore: the limits' CRUD, and
the room a claim may take per limited type (calls never interleave here, so no locks)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fleetq_server import errors
from fleetq_server.store.records import TypeLimit, TypeLimitRecord


@dataclass
class _Limit:
    limit: TypeLimit
    source: str
    tokens: float
    tokens_ts: datetime
    updated_ts: datetime

    def tokens_at(self, now: datetime) -> float | None:
        rate, burst = self.limit.rate_per_second, self.limit.burst
        if rate is None or burst is None:
            return None
        elapsed = max(0.0, (now - self.tokens_ts).total_seconds())
        return min(float(burst), self.tokens + rate * elapsed)


class MemoryTypeLimits:
    """Limits in a dict; `transaction()` and `steps` come from MemoryStore."""

    steps: dict[str, Any]
    type_limits: dict[str, _Limit]

    def transaction(self) -> AbstractContextManager[datetime]:
        raise NotImplementedError  # MemoryStore's

    def _in_flight(self) -> Counter[str]:
        return Counter(s.type for s in self.steps.values() if s.status == "claimed")

    def within_limits(self, candidates: list[Any], limit: int, now: datetime) -> list[Any]:
        """The first `limit` of `candidates` (pending steps, best first) that their types'
        limits leave room for, the tokens they spend taken out of the buckets."""
        rooms, taken = self._limit_rooms(now), Counter[str]()
        kept = []
        for step in candidates:
            if len(kept) < limit and taken[step.type] < rooms.get(step.type, limit):
                taken[step.type] += 1
                kept.append(step)
        self._limit_spend(taken, now)
        return kept

    def _limit_rooms(self, now: datetime) -> dict[str, int]:
        """Claims each limited type may take now (the claim's `room`)."""
        in_flight = self._in_flight()
        rooms = {}
        for step_type, row in self.type_limits.items():
            room = math.inf
            if row.limit.max_concurrency is not None:
                room = row.limit.max_concurrency - in_flight[step_type]
            tokens = row.tokens_at(now)
            if tokens is not None:
                room = min(room, math.floor(tokens))
            rooms[step_type] = int(max(0, room))
        return rooms

    def _limit_spend(self, claimed: Counter[str], now: datetime) -> None:
        """Take the claims' tokens out of their types' buckets."""
        for step_type, count in claimed.items():
            row = self.type_limits.get(step_type)
            tokens = row.tokens_at(now) if row is not None else None
            if row is not None and tokens is not None:
                row.tokens, row.tokens_ts = tokens - count, max(row.tokens_ts, now)

    def _limit_record(self, row: _Limit) -> TypeLimitRecord:
        return TypeLimitRecord(
            row.limit, row.source, self._in_flight()[row.limit.step_type], row.updated_ts
        )

    def _put(self, limit: TypeLimit, source: str, now: datetime) -> _Limit:
        old = self.type_limits.get(limit.step_type)
        full = float(limit.burst or 0)
        tokens = full if old is None else min(old.tokens, full)
        row = _Limit(limit, source, tokens, old.tokens_ts if old else now, now)
        self.type_limits[limit.step_type] = row
        return row

    async def type_limit_put(self, limit: TypeLimit, *, source: str = "api") -> TypeLimitRecord:
        with self.transaction() as now:
            return self._limit_record(self._put(limit, source, now))

    async def type_limit_list(self) -> list[TypeLimitRecord]:
        with self.transaction():
            return [self._limit_record(self.type_limits[t]) for t in sorted(self.type_limits)]

    async def type_limit_delete(self, step_type: str) -> None:
        with self.transaction():
            if self.type_limits.pop(step_type, None) is None:
                raise errors.NotFoundError(f"no limit for step type {step_type!r}")

    async def type_limit_reconcile(self, declared: Sequence[TypeLimit]) -> list[str]:
        with self.transaction() as now:
            for limit in declared:
                self._put(limit, "file", now)
            names = {limit.step_type for limit in declared}
            gone = sorted(
                t for t, row in self.type_limits.items() if row.source == "file" and t not in names
            )
            for step_type in gone:
                del self.type_limits[step_type]
            return gone
