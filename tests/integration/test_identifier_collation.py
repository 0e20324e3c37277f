"""Migration 0017 on a real PostgreSQL: identifiers compare by bytes (COLLATE "C"), the
upgrade keeps a database holding steps working, and listings keep their documented order."""

from dataclasses import replace

import asyncpg

from fleetq_server.store import Store
from fleetq_server.store.records import StepListFilter, StepListPosition, StepOutcome
from fleetq_server.submission import prepare_step
from tests.integration.conftest import REQUEST
from tests.support.databases import migrate_before, opened_store

# The columns 0017 changes: compared across tables, so they change together.
IDENTIFIERS = {
    ("fleetq_steps", "step_id"),
    ("fleetq_steps", "type"),
    ("fleetq_steps", "claimed_by"),
    ("fleetq_steps", "idempotency_key"),
    ("fleetq_steps", "client_key"),
    ("fleetq_step_attempts", "step_id"),
    ("fleetq_step_attempts", "pod_id"),
    ("fleetq_step_watches", "step_id"),
    ("fleetq_step_watches", "pod_id"),
    ("fleetq_pods", "pod_id"),
    ("fleetq_workers", "worker_id"),
    ("fleetq_finished_step_counts", "status"),
    ("fleetq_finished_step_counts", "type"),
    ("fleetq_type_limits", "type"),
    ("fleetq_schedules", "step_type"),
    ("fleetq_schedules", "last_step_id"),
}


async def _columns_in_c(store: Store) -> set[tuple[str, str]]:
    async with store._connection() as connection:
        rows = await connection.fetch(
            """
            SELECT c.relname, a.attname FROM pg_attribute AS a
            JOIN pg_class AS c ON c.oid = a.attrelid
            JOIN pg_collation AS l ON l.oid = a.attcollation
            WHERE c.relname LIKE 'fleetq%' AND c.relkind = 'r' AND l.collname = 'C'
            """
        )
    return {(row["relname"], row["attname"]) for row in rows}


async def test_upgrading_a_database_holding_steps_puts_identifiers_in_c(
    database_url: str,
) -> None:
    """A database at 0016 with pending, claimed, finished and watched steps takes 0017, and
    claims, outcomes, counts and watches still work across the changed columns."""
    connection = await asyncpg.connect(database_url)
    try:
        await migrate_before(connection, 17)
        await connection.execute(
            """
            INSERT INTO fleetq_pods (pod_id, max_capacity) VALUES ('old-pod', 8);
            INSERT INTO fleetq_steps (step_id, status, type, args, idempotency_key,
                                      payload_hash, claimed_by, finished_ts)
            SELECT 'step_20260101000000_' || lpad(g::text, 16, '0'),
                   (ARRAY['pending', 'claimed', 'completed'])[g % 3 + 1], 'legacy', '{}',
                   'k' || g, 'h', CASE WHEN g % 3 = 1 THEN 'old-pod' END,
                   CASE WHEN g % 3 = 2 THEN now() END
            FROM generate_series(1, 30) AS g;
            INSERT INTO fleetq_step_watches (step_id, pod_id)
            VALUES ('step_20260101000000_0000000000000003', 'old-pod');
            """
        )
    finally:
        await connection.close()
    async with opened_store(database_url) as store:
        assert await _columns_in_c(store) >= IDENTIFIERS
        await store.pod_register("new-pod", 8)
        claimed = await store.step_claim_batch("new-pod", ["legacy"], 100)
        assert len(claimed) == 10
        outcomes = [StepOutcome(step, "new-pod", result_json="1") for step in claimed]
        assert await store.step_finish_many(outcomes) == ["completed"] * 10
        stats = await store.queue_stats(15)
        assert stats.counts_by_status == {"claimed": 10, "completed": 20}
        watched = await store.step_get("step_20260101000000_0000000000000003")
        assert watched.status == "completed"


async def test_listing_orders_step_ids_by_their_bytes(store: Store) -> None:
    """Steps created together are listed by step_id, compared byte by byte: the order of
    Python's str comparison, whatever the database's locale (ids are ASCII, so the order of
    the ids FLEET-Q makes is the same as before 0017)."""
    ids = [
        "step_20260101000000_" + suffix
        for suffix in ("0123456789abcdef", "ABCDEF0123456789", "a_b-c", "A-b_c", "_a", "-a")
    ]
    steps = [prepare_step(replace(REQUEST, type="alpha"), step_id) for step_id in ids]
    await store.step_insert_many(steps)  # one statement: one created_ts
    first = await store.step_list_page(StepListFilter(), None, 3)
    last = first[-1]
    rest = await store.step_list_page(
        StepListFilter(), StepListPosition(last.created_ts, last.step_id), 10
    )
    assert [step.step_id for step in first + rest] == sorted(ids, reverse=True)
