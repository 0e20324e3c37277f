"""The claim loop's own connection (store.connection.PLANNED_ONCE_SETTINGS) plans each of
its statements once, generically, for every later batch and table size: the plans must be
key lookups driven by the statement's small inputs, never a scan of fleetq_steps, even
though a generic plan cannot see the claim's LIMIT or the arrays' lengths."""

from collections.abc import AsyncIterator

import asyncpg
import pytest

from fleetq_server.store import Store
from fleetq_server.store.connection import DIRECT, PLANNED_ONCE_SETTINGS, connect_options
from fleetq_server.store.self_claim import SELF_CLAIM_INSERT
from fleetq_server.store.step_outcomes import FINISH_CLAIM

# Enough pending steps, analyzed, that a plan guessing the claim takes a tenth of them
# found hashing the whole table cheaper than probing its primary key per claimed step.
PENDING = 5_000


@pytest.fixture
async def planned_once(store: Store, database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A session as the claim loop's own, on a database with PENDING analyzed steps."""
    await store.pod_register("pod-a", 8)
    connection = await asyncpg.connect(
        database_url, **connect_options(DIRECT, PLANNED_ONCE_SETTINGS)
    )
    try:
        await connection.execute(
            f"""INSERT INTO fleetq_steps (step_id, type, args, idempotency_key, payload_hash)
            SELECT 's' || g, 'hello_world', '{{}}', 'k' || g, 'h'
            FROM generate_series(1, {PENDING}) AS g;
            ANALYZE fleetq_steps"""
        )
        yield connection
    finally:
        await connection.close()


async def generic_plan(connection: asyncpg.Connection, statement: str, arguments: str) -> str:
    """EXPLAIN of `statement`'s generic plan, as this session would keep it."""
    await connection.execute(f"PREPARE planned AS {statement}")
    rows = await connection.fetch(f"EXPLAIN EXECUTE planned({arguments})")
    return "\n".join(row[0] for row in rows)


def assert_key_lookups_only(plan: str) -> None:
    assert "Seq Scan on fleetq_steps" not in plan, plan
    assert "Hash Join" not in plan, plan
    assert "Merge Join" not in plan, plan
    assert "Index Scan using fleetq_steps_pkey" in plan, plan


async def test_the_outcome_write_that_claims_probes_its_steps_by_key(
    planned_once: asyncpg.Connection,
) -> None:
    # Two outcomes: step ids, attempts, pods, ok, results, errors, backoffs, retryable.
    outcomes = ["{s1,s2}", "{1,1}", "{pod-a,pod-a}", "{t,t}", "{NULL,NULL}", "{NULL,NULL}"]
    arrays = ", ".join(f"'{array}'" for array in [*outcomes, "{0,0}", "{t,t}"])
    plan = await generic_plan(
        planned_once, FINISH_CLAIM, f"'pod-a', '{{hello_world}}', 16, {arrays}"
    )
    assert_key_lookups_only(plan)


async def test_the_self_claiming_insert_scans_no_steps(planned_once: asyncpg.Connection) -> None:
    plan = await generic_plan(planned_once, SELF_CLAIM_INSERT, "'[]', 'pod-a', '{hello_world}', 8")
    assert "Seq Scan on fleetq_steps" not in plan, plan
