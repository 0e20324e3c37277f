"""Atomic batches on the real store without client keys: the INSERT statement alone is
their transaction, so a step the database refuses still leaves nothing written."""

from collections.abc import AsyncIterator
from dataclasses import replace

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
    outcomes = await store.step_copy_parts(in_parts(steps))

    assert outcomes is not None
    assert [(o.step_id, o.created) for o in outcomes] == [(s.step_id, True) for s in steps]
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
