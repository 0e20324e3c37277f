"""SQL for listing steps: newest first, filtered, one keyset page at a time.

Steps that are not claimed (pending and finished: the millions) are read newest first from
fleetq_steps_listed_idx (migration 0007); claimed ones (at most the fleet's capacity) from
the recovery index of claimed steps, sorted; the two are merged. The listing index leaves
claimed steps out so that a claim, which rewrites its step, adds no entry to it.
"""

from typing import Any

from fleetq_server.store.connection import PoolHolder
from fleetq_server.store.records import StepListFilter, StepListPosition, StepRecord
from fleetq_server.store.step_attempts import STEP_COLUMNS, step_record

# One branch per group; each names its statuses as its partial index's predicate does.
_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("status <> 'claimed'", ("pending", "completed", "failed", "cancelled")),
    ("status = 'claimed'", ("claimed",)),
)


def _conditions(where: StepListFilter, after: StepListPosition | None) -> tuple[str, list[Any]]:
    """The filters of a page (besides its status group) and their parameters. Only the
    filters that are set appear, so each page is planned for what it asks."""
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
        # A row comparison: an index condition on the listing index, not a filter.
        add("(created_ts, step_id) < ({}, {})", after.created_ts, after.step_id)
    return " AND ".join(["TRUE", *clauses]), params


class StepListingQueries(PoolHolder):
    """ListSteps' pages."""

    async def step_list_page(
        self, where: StepListFilter, after: StepListPosition | None, limit: int
    ) -> list[StepRecord]:
        """Up to `limit` steps matching `where`, newest first (created_ts, step_id
        descending), strictly after `after` in that order when it is given."""
        condition, params = _conditions(where, after)
        limit_param = f"${len(params) + 1}"
        branches = [
            f"""(SELECT step_id, created_ts FROM fleetq_steps WHERE {group} AND {condition}
                 ORDER BY created_ts DESC, step_id DESC LIMIT {limit_param})"""
            for group, statuses in _GROUPS
            if not where.statuses or set(statuses) & set(where.statuses)
        ]
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"""
                SELECT {STEP_COLUMNS} FROM fleetq_steps WHERE step_id IN (
                    SELECT step_id FROM ({" UNION ALL ".join(branches)}) AS page
                    ORDER BY created_ts DESC, step_id DESC LIMIT {limit_param}
                )
                ORDER BY created_ts DESC, step_id DESC
                """,
                *params,
                limit,
            )
        return [step_record(row) for row in rows]
