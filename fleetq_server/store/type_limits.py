"""SQL for fleet-wide limits per step type (migration 0008): the claim's pieces that enforce
them, and the limits' admin statements.

A claim that wants a limited type locks the type's row in `fleetq_type_limits` (in type
order, so two claims never deadlock), and only then counts the type's claimed steps with
`fleetq_claimed_count` (a fresh snapshot: every claim of the type that committed before the
lock). The room left, `max_concurrency` minus that count and the whole tokens of the rate
bucket, bounds the type's share of the claim, and the same statement takes the spent tokens
out of the bucket. Concurrent claims of one limited type are serialised by the row lock, so
the limit holds at every instant; claims of unlimited types find no row and lock nothing.
"""

from collections.abc import Sequence

import asyncpg

from fleetq_server import errors
from fleetq_server.store.connection import PoolHolder
from fleetq_server.store.records import TypeLimit, TypeLimitRecord

# The claim's first CTEs ($2: the claiming pod's types, $3: its free capacity): `room`, per
# limited type among them, the claims it may still take now and its bucket's tokens now.
LIMIT_ROOM_CTES = """
    limited AS MATERIALIZED (
        SELECT type, max_concurrency, rate_per_second, burst, tokens, tokens_ts
        FROM fleetq_type_limits WHERE type = ANY($2::text[])
        ORDER BY type
        FOR UPDATE
    ), bucket AS (
        SELECT type, max_concurrency,
               LEAST(burst, tokens + rate_per_second
                     * GREATEST(0, extract(epoch FROM now() - tokens_ts))) AS tokens_now
        FROM limited
    ), room AS MATERIALIZED (
        SELECT type, tokens_now, GREATEST(0, LEAST(
                   COALESCE(max_concurrency - fleetq_claimed_count(type), $3),
                   COALESCE(floor(tokens_now)::int, $3))) AS room
        FROM bucket
    )"""
# The claim's last CTE, after `claimed`: the tokens its claims of rate-limited types spent.
LIMIT_SPEND_CTE = """
    spent AS (
        UPDATE fleetq_type_limits AS l
        SET tokens = room.tokens_now - used.n, tokens_ts = GREATEST(l.tokens_ts, now())
        FROM room, (SELECT type, count(*) AS n FROM claimed GROUP BY type) AS used
        WHERE l.type = room.type AND used.type = room.type AND room.tokens_now IS NOT NULL
    )"""

_COLUMNS = """l.type, l.max_concurrency, l.rate_per_second, l.burst, l.source, l.updated_ts,
    (SELECT count(*) FROM fleetq_steps AS s
     WHERE s.status = 'claimed' AND s.type = l.type)::int AS in_flight"""


def _record(row: asyncpg.Record) -> TypeLimitRecord:
    limit = TypeLimit(row["type"], row["max_concurrency"], row["rate_per_second"], row["burst"])
    return TypeLimitRecord(limit, row["source"], row["in_flight"], row["updated_ts"])


_UPSERT = """
    INSERT INTO fleetq_type_limits AS l (type, max_concurrency, rate_per_second, burst, tokens,
        source)
    VALUES ($1, $2, $3, $4, COALESCE($4, 0), $5)
    ON CONFLICT (type) DO UPDATE SET max_concurrency = EXCLUDED.max_concurrency,
        rate_per_second = EXCLUDED.rate_per_second, burst = EXCLUDED.burst,
        tokens = LEAST(l.tokens, COALESCE(EXCLUDED.burst, 0)), source = EXCLUDED.source,
        updated_ts = now()
"""


class TypeLimitQueries(PoolHolder):
    """The limits' admin statements; the claim's side lives in StepQueries."""

    async def type_limit_put(self, limit: TypeLimit, *, source: str = "api") -> TypeLimitRecord:
        """Set a type's limit (a new one starts with a full bucket); returns it with the
        type's claimed steps now."""
        async with self._connection() as connection:
            row = await connection.fetchrow(
                f"WITH l AS ({_UPSERT} RETURNING *) SELECT {_COLUMNS} FROM l",
                limit.step_type,
                limit.max_concurrency,
                limit.rate_per_second,
                limit.burst,
                source,
            )
        assert row is not None
        return _record(row)

    async def type_limit_list(self) -> list[TypeLimitRecord]:
        """Every limit with its type's claimed steps now, by type."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS} FROM fleetq_type_limits AS l ORDER BY l.type"
            )
        return [_record(row) for row in rows]

    async def type_limit_delete(self, step_type: str) -> None:
        """Lift a type's limit; NotFoundError when it has none."""
        async with self._connection() as connection:
            status = await connection.execute(
                "DELETE FROM fleetq_type_limits WHERE type = $1", step_type
            )
        if status.endswith(" 0"):
            raise errors.NotFoundError(f"no limit for step type {step_type!r}")

    async def type_limit_reconcile(self, declared: Sequence[TypeLimit]) -> list[str]:
        """Make the file's limits what is stored, in one transaction; the types whose file
        limits were lifted because the file no longer declares them."""
        async with self._transaction() as connection:
            for limit in declared:
                await connection.execute(
                    _UPSERT,
                    limit.step_type,
                    limit.max_concurrency,
                    limit.rate_per_second,
                    limit.burst,
                    "file",
                )
            rows = await connection.fetch(
                "DELETE FROM fleetq_type_limits WHERE source = 'file'"
                " AND NOT type = ANY($1::text[]) RETURNING type",
                [limit.step_type for limit in declared],
            )
        return sorted(row["type"] for row in rows)
