"""Atomic batches on the real store without client keys: the INSERT statement alone is
their transaction, so a step the database refuses still leaves nothing written."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from fleetq_server import errors
from fleetq_server.store import Store
from fleetq_server.store.records import NewStep
from fleetq_server.store.step_copy import COPY_MIN_STEPS
from fleetq_server.submission import prepare_step
from tests.integration.conftest import REQUEST


async def test_an_atomic_batch_without_keys_that_the_database_refuses_writes_nothing(
    store: Store,
) -> None:
    stored = prepare_step(REQUEST)
    await store.step_insert_many([stored])
    fresh = prepare_step(REQUEST)
    again = replace(prepare_step(REQUEST), step_id=stored.step_id)  # the primary key refuses it
    with pytest.raises(errors.DataRejectedError):
        await store.step_insert_many([fresh, again], atomic=True)
    with pytest.raises(errors.NotFoundError):
        await store.step_get(fresh.step_id)


async def test_an_atomic_batch_without_keys_stores_every_step_as_new(store: Store) -> None:
    steps = [prepare_step(replace(REQUEST, args={"i": i})) for i in range(3)]
    outcomes = await store.step_insert_many(steps, atomic=True)
    assert [(o.step_id, o.created) for o in outcomes] == [(s.step_id, True) for s in steps]  # type: ignore[union-attr]
    assert [(await store.step_get(s.step_id)).args for s in steps] == [{"i": i} for i in range(3)]


# Large batches of plain steps go by COPY (store/step_copy.py), in its text format, part
# by part as the pod prepares them.


async def in_parts(steps: list[NewStep], size: int = 50) -> AsyncIterator[list[NewStep]]:
    for start in range(0, len(steps), size):
        yield steps[start : start + size]


AWKWARD = {
    "path": "C:\\temp\\new",
    "text": 'tab\there, newline\nthere, "quoted", \\N, \\.',
    "unicode": "żółw 🐢 \u2028",
    "nested": {"list": [1, 2.5, None, True, {"k": "\\"}]},
}


async def test_a_large_batch_of_plain_steps_stores_each_step_as_given(store: Store) -> None:
    steps = [
        prepare_step(replace(REQUEST, args={**AWKWARD, "i": i}, metadata={"m": "\\t"}, priority=i))
        for i in range(COPY_MIN_STEPS)
    ]
    steps[1] = replace(steps[1], traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    assert await store.step_copy_parts(in_parts(steps)) == len(steps)
    for step in steps:
        stored = await store.step_get(step.step_id)
        assert (stored.status, stored.type, stored.args, stored.metadata) == (
            "pending",
            step.type,
            {**AWKWARD, "i": step.priority},
            {"m": "\\t"},
        )
        assert (stored.priority, stored.max_retries, stored.idempotency_key) == (
            step.priority,
            step.max_retries,
            step.idempotency_key,
        )
    assert await store.step_traceparent(steps[1].step_id) == steps[1].traceparent
    assert await store.step_traceparent(steps[2].step_id) is None


async def test_a_large_batch_of_plain_steps_that_the_database_refuses_writes_nothing(
    store: Store,
) -> None:
    stored = prepare_step(REQUEST)
    await store.step_insert_many([stored])
    steps = [prepare_step(REQUEST) for _ in range(COPY_MIN_STEPS)]
    steps[-1] = replace(steps[-1], step_id=stored.step_id)  # the primary key refuses it
    with pytest.raises(errors.DataRejectedError):
        await store.step_copy_parts(in_parts(steps))
    with pytest.raises(errors.NotFoundError):
        await store.step_get(steps[0].step_id)


async def test_an_error_while_the_parts_are_made_writes_nothing(store: Store) -> None:
    steps = [prepare_step(REQUEST) for _ in range(COPY_MIN_STEPS)]

    async def failing() -> AsyncIterator[list[NewStep]]:
        yield steps[:50]
        raise errors.ValidationError("steps[50].type: refused")

    with pytest.raises(errors.ValidationError, match=r"steps\[50\]"):
        await store.step_copy_parts(failing())
    with pytest.raises(errors.NotFoundError):
        await store.step_get(steps[0].step_id)


async def test_a_part_with_a_step_that_is_not_plain_writes_nothing_and_says_so(
    store: Store,
) -> None:
    steps = [prepare_step(REQUEST) for _ in range(COPY_MIN_STEPS)]
    steps[60] = prepare_step(replace(REQUEST, idempotency_key="keyed"))
    assert await store.step_copy_parts(in_parts(steps)) is None
    with pytest.raises(errors.NotFoundError):
        await store.step_get(steps[0].step_id)


async def test_each_part_of_a_copied_batch_is_inserted_before_the_next_arrives(
    store: Store, database_url: str
) -> None:
    """Migration 0018: PostgreSQL inserts copied rows as they arrive, rather than holding
    up to 64 kB of them back until the COPY ends (multi-insert buffering), so little work
    is left after the pod's last part. Seen from another session: the first part's rows
    take heap pages while the COPY is still waiting for its second part (uncommitted rows
    are invisible, but the pages holding them are not)."""
    steps = [prepare_step(REQUEST) for _ in range(COPY_MIN_STEPS)]
    SIZE = "SELECT pg_relation_size('fleetq_steps')"
    observer = await asyncpg.connect(database_url)
    try:
        empty = await observer.fetchval(SIZE)

        async def heap_grows() -> None:
            # Polling: no event marks a page added by another session's COPY.
            while await observer.fetchval(SIZE) == empty:  # noqa: ASYNC110
                await asyncio.sleep(0.005)

        async def parts() -> AsyncIterator[list[NewStep]]:
            yield steps[:10]  # a few rows: far below what multi-insert would buffer
            await asyncio.wait_for(heap_grows(), timeout=10)
            yield steps[10:]

        stored = await store.step_copy_parts(parts())
        # fleetq_now() is the transaction's start, as now() was: due at once, not scheduled.
        early = "SELECT count(*) FROM fleetq_steps WHERE not_before_ts <> created_ts"
        assert await observer.fetchval(early) == 0
    finally:
        await observer.close()
    assert stored == COPY_MIN_STEPS
