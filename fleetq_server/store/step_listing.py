"""SQL for listing steps: newest first, filtered, one keyset page at a time."""

from typing import Any

from fleetq_server.store.connection import PoolHolder
from fleetq_server.store.records import StepListFilter, StepListPosition, StepRecord
from fleetq_server.store.steps import STEP_COLUMNS, step_record


def _conditions(where: StepListFilter, after: StepListPosition | None) -> tuple[str, list[Any]]:
    """The WHERE clause of a page and its parameters. Only the filters that are set appear,
    so each page is planned for what it asks (the pool plans every execution anyway)."""
    clauses: list[str] = []
    params: list[Any] = []

    def add(clause: str, *values: Any) -> None:
        params.extend(values)
        numbers = range(len(params) - len(values) + 1, len(params) + 1)
        clauses.append(clause.format(*(f"${n}" for n in numbers)))

    if where.statuses:
        add("status = ANY({}::text[])", list(where.statuses))
    if where.type is not None:
        add("type = {}", where.type)
    if where.created_after is not None:
        add("created_ts >= {}", where.created_after)
    if where.created_before is not None:
        add("created_ts < {}", where.created_before)
    if where.idempotency_key is not None:
        # client_key holds exactly the client-supplied keys, under a unique index.
        add("client_key = {}", where.idempotency_key)
    if after is not None:
        # A row comparison: an index condition on fleetq_steps_created_idx, not a filter.
        add("(created_ts, step_id) < ({}, {})", after.created_ts, after.step_id)
    return (" AND ".join(clauses) or "TRUE"), params


class StepListingQueries(PoolHolder):
    """ListSteps' pages, read newest first from fleetq_steps_created_idx (migration 0007)."""

    async def step_list_page(
        self, where: StepListFilter, after: StepListPosition | None, limit: int
    ) -> list[StepRecord]:
        """Up to `limit` steps matching `where`, newest first (created_ts, step_id
        descending), strictly after `after` in that order when it is given."""
        condition, params = _conditions(where, after)
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"""
                SELECT {STEP_COLUMNS} FROM fleetq_steps WHERE {condition}
                ORDER BY created_ts DESC, step_id DESC
                LIMIT ${len(params) + 1}
                """,
                *params,
                limit,
            )
        return [step_record(row) for row in rows]
