"""The per-minute ring of migration 0013 on a real PostgreSQL: slots reset when their minute
comes round, never overwrite a newer minute, add up across stripes under concurrent
completers, and the migration backfills the two hours before it."""

import asyncio

from fleetq_server.store import Store
from fleetq_server.store.migrations import apply_migrations
from fleetq_server.store.records import StepOutcome
from tests.contract.conftest import submit_hello
from tests.support import backdating
from tests.support.databases import opened_store

# The current minute's slot, as migration 0013 computes it.
CURRENT_SLOT = "(extract(epoch FROM date_trunc('minute', now()))::bigint / 60 % 120)::integer"


async def complete(store: Store, count: int, pod_id: str = "pod-a") -> list[str]:
    """Submit, claim and complete `count` steps in one outcome statement; their ids."""
    ids = [await submit_hello(store) for _ in range(count)]
    claimed = await store.step_claim_batch(pod_id, ["hello_world"], count)
    await store.step_finish_many([StepOutcome(step, pod_id, result_json="1") for step in claimed])
    return ids


async def totals(store: Store) -> tuple[int, int]:
    series = await store.throughput_list(120)
    return sum(m.completed for m in series), sum(m.failed for m in series)


async def fill_current_slot(store: Store, minutes_away: int, completed: int) -> None:
    """Every stripe of the current minute's slot, holding another minute's counts."""
    async with store._connection() as connection:
        await connection.execute(
            f"""
            INSERT INTO fleetq_throughput (slot, stripe, minute_ts, completed, failed)
            SELECT {CURRENT_SLOT}, stripe,
                   date_trunc('minute', now()) + make_interval(mins => $1), $2, 0
            FROM generate_series(0, 15) AS stripe
            """,
            minutes_away,
            completed,
        )


async def test_a_slot_still_holding_the_minute_two_hours_back_is_reset_not_added_to(
    database_url: str,
) -> None:
    async with opened_store(database_url) as store:
        await store.pod_register("pod-a", 8)
        await fill_current_slot(store, -120, 1000)
        assert await totals(store) == (0, 0)  # outside every window

        await complete(store, 1)

        assert await totals(store) == (1, 0)


async def test_a_write_for_an_older_minute_leaves_a_newer_one_alone(database_url: str) -> None:
    async with opened_store(database_url) as store:
        await store.pod_register("pod-a", 8)
        # As if this transaction's now() were two hours behind the slot's minute.
        await fill_current_slot(store, 120, 7)

        await complete(store, 1)

        async with store._connection() as connection:
            rows = await connection.fetch(
                f"SELECT minute_ts > now() AS newer, completed FROM fleetq_throughput"
                f" WHERE slot = {CURRENT_SLOT}"
            )
        assert {(row["newer"], row["completed"]) for row in rows} <= {(True, 7), (False, 1)}
        assert sum(row["completed"] for row in rows if row["newer"]) == 16 * 7


async def test_concurrent_completers_add_up_across_stripes(database_url: str) -> None:
    async with opened_store(database_url, pool_size=8) as store:
        await store.pod_register("pod-a", 1000)
        ids = [await submit_hello(store) for _ in range(200)]
        claimed = await store.step_claim_batch("pod-a", ["hello_world"], 200)
        assert len(claimed) == len(ids)

        await asyncio.gather(
            *(
                store.step_finish_many(
                    [StepOutcome(step, "pod-a", result_json="1") for step in claimed[n::20]]
                )
                for n in range(20)
            )
        )

        assert await totals(store) == (200, 0)


async def test_migration_0013_backfills_the_two_hours_before_it(database_url: str) -> None:
    async with opened_store(database_url) as store:
        await store.pod_register("pod-a", 8)
        [recent] = await complete(store, 1)
        [old] = await complete(store, 1)
        await backdating.age_step(store, recent, 30 * 60)
        await backdating.age_step(store, old, 3 * 3600)
        # Back to the schema before 0013, its counts gone.
        async with store._connection() as connection:
            await connection.execute(
                """
                DROP TABLE fleetq_throughput;
                DROP FUNCTION fleetq_throughput_add(bigint, bigint);
                DROP INDEX fleetq_recovery_cycles_listed_idx;
                CREATE INDEX fleetq_recovery_cycles_finished_idx
                    ON fleetq_recovery_cycles (finished_ts);
                DELETE FROM fleetq_schema_migrations WHERE version = 13;
                """
            )

        assert await apply_migrations(database_url) == ["0013_throughput_ring.sql"]

        series = await store.throughput_list(120)
        counted = [(m.minute_ts, m.completed) for m in series if m.completed]
        async with store._connection() as connection:
            minute = await connection.fetchval(
                "SELECT date_trunc('minute', finished_ts) FROM fleetq_steps WHERE step_id = $1",
                recent,
            )
        assert counted == [(minute, 1)]  # the step of three hours back is not
