"""Atomic batches on the real store without client keys: the INSERT statement alone is
their transaction, so a step the database refuses still leaves nothing written."""

from dataclasses import replace

import pytest

from fleetq_server import errors
from fleetq_server.store import Store
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
