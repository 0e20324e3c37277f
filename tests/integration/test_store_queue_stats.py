"""Queue statistics against a real PostgreSQL: the maintained counts of finished steps agree
with a full scan after every kind of transition, and an upgrade backfills them."""

from dataclasses import replace

import asyncpg
import pytest

from fleetq_server.store import Store
from fleetq_server.store.pods import OTHER_TYPES
from fleetq_server.store.records import StepOutcome
from fleetq_server.submission import prepare_step
from tests.integration.conftest import REQUEST
from tests.support.databases import migrate_before, opened_store

ERROR = {"type": "E", "message": "boom"}


@pytest.fixture
async def store(store: Store) -> Store:
    """The shared fixture's store, with the leader registered (not autouse: the upgrade
    test must find its database unmigrated)."""
    await store.pod_register("leader", 8)
    return store


async def submit(store: Store, count: int, **changes: object) -> None:
    steps = [prepare_step(replace(REQUEST, **{"type": "alpha", **changes})) for _ in range(count)]  # type: ignore[arg-type]
    await store.step_insert_many(steps)


async def finish(store: Store, pod_id: str, step_type: str, ok: int, failed: int) -> None:
    """Claim `ok + failed` steps of `step_type` and finish them (no retries left)."""
    claimed = await store.step_claim_batch(pod_id, [step_type], ok + failed)
    assert len(claimed) == ok + failed
    await store.step_finish_many(
        [StepOutcome(step, pod_id, result_json="1") for step in claimed[:ok]]
        + [StepOutcome(step, pod_id, error=ERROR) for step in claimed[ok:]]
    )


async def scanned(store: Store) -> tuple[dict[str, int], dict[str, int], dict[int, int]]:
    """Counts by status, by type and pending by priority the slow way: a full scan
    (test-only SQL)."""
    async with store._connection() as connection:
        by_status = await connection.fetch(
            "SELECT status, count(*) AS n FROM fleetq_steps GROUP BY status"
        )
        by_type = await connection.fetch(
            "SELECT type, count(*) AS n FROM fleetq_steps GROUP BY type"
        )
        by_priority = await connection.fetch(
            "SELECT priority, count(*) AS n FROM fleetq_steps"
            " WHERE status = 'pending' GROUP BY priority"
        )
    return (
        {r["status"]: r["n"] for r in by_status},
        {r["type"]: r["n"] for r in by_type},
        {r["priority"]: r["n"] for r in by_priority},
    )


async def assert_stats_match_a_scan(store: Store) -> None:
    stats = await store.queue_stats(15)
    counted = (stats.counts_by_status, stats.steps_by_type, stats.pending_by_priority)
    assert counted == await scanned(store)


async def test_counts_follow_completion_failure_recovery_and_deletion(store: Store) -> None:
    await submit(store, 5)
    await submit(store, 4, type="beta", max_retries=1, priority=-3)
    await finish(store, "leader", "alpha", ok=3, failed=1)
    await finish(store, "leader", "beta", ok=1, failed=2)  # both failures are retried
    await assert_stats_match_a_scan(store)

    await store.pod_register("doomed", 8)
    assert len(await store.step_claim_batch("doomed", ["alpha", "beta"], 8)) == 4
    await assert_stats_match_a_scan(store)
    async with store._connection() as connection:
        await connection.execute(
            "UPDATE fleetq_pods SET last_heartbeat_ts = now() - interval '1 minute'"
            " WHERE pod_id = 'doomed'"
        )
    outcome, _ = await store.recovery_run("leader", 15, dry_run=False, trigger="manual")
    # The alpha and the two beta steps that had used their retry fail; one beta is requeued.
    assert (len(outcome.terminal_steps), len(outcome.requeued_steps)) == (3, 1)
    await assert_stats_match_a_scan(store)

    async with store._connection() as connection:
        await connection.execute("UPDATE fleetq_steps SET finished_ts = now() - interval '1 day'")
    assert await store.step_delete_finished_before(3600, 2) == 2
    await assert_stats_match_a_scan(store)
    counts = (await store.queue_stats(15)).counts_by_status
    assert (counts["completed"] + counts["failed"], counts["pending"]) == (6, 1)


async def test_a_type_with_no_steps_left_is_not_listed(store: Store) -> None:
    await submit(store, 1)
    await finish(store, "leader", "alpha", ok=1, failed=0)
    assert (await store.queue_stats(15)).steps_by_type == {"alpha": 1}
    assert await store.step_delete_finished_before(0, 10) == 1
    stats = await store.queue_stats(15)
    assert (stats.steps_by_type, stats.counts_by_status) == ({}, {})


async def test_upgrading_a_database_backfills_the_counts_of_existing_steps(
    database_url: str,
) -> None:
    """A database at migration 0002 with finished steps gains correct counts in 0003."""
    connection = await asyncpg.connect(database_url)
    try:
        await migrate_before(connection, 3)
        await connection.execute(
            """
            INSERT INTO fleetq_steps (step_id, status, type, args, idempotency_key,
                                      payload_hash, finished_ts)
            SELECT 'old_' || g, CASE WHEN g % 3 = 0 THEN 'failed' ELSE 'completed' END,
                   'legacy', '{}', 'k' || g, 'h', now()
            FROM generate_series(1, 30) AS g
            """
        )
    finally:
        await connection.close()
    async with opened_store(database_url) as store:
        stats = await store.queue_stats(15)
        assert stats.counts_by_status == {"completed": 20, "failed": 10}
        assert stats.steps_by_type == {"legacy": 30}


async def test_steps_by_type_names_the_top_types_and_sums_the_rest(store: Store) -> None:
    # Types t00..t11 with 12..1 steps each: the most numerous come first.
    for index in range(12):
        await submit(store, 12 - index, type=f"t{index:02d}")
    stats = await store.queue_stats(15, top_types=5)
    assert stats.steps_by_type == {
        "t00": 12,
        "t01": 11,
        "t02": 10,
        "t03": 9,
        "t04": 8,
        OTHER_TYPES: sum(range(1, 8)),
    }
    assert stats.counts_by_status == {"pending": sum(range(1, 13))}


async def test_steps_by_type_has_no_other_bucket_when_every_type_fits(store: Store) -> None:
    await submit(store, 2, type="alpha")
    await submit(store, 1, type="beta")
    assert (await store.queue_stats(15, top_types=2)).steps_by_type == {"alpha": 2, "beta": 1}
