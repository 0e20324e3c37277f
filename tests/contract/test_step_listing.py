"""The store contract for step listings: newest first, filters, keyset pages."""

from dataclasses import replace
from datetime import timedelta

from fleetq_server.store.records import (
    InsertOutcome,
    StepListFilter,
    StepListPosition,
    StepOutcome,
)
from fleetq_server.submission import SubmitRequest, prepare_step
from tests.contract.conftest import Backend

REQUEST = SubmitRequest(
    type="hello_world", args={}, metadata=None, priority=0, max_retries=0, idempotency_key=None
)


async def submit_many(backend: Backend, count: int, **changes: object) -> list[str]:
    """`count` steps inserted by one statement: they share a created_ts."""
    steps = [prepare_step(replace(REQUEST, **changes)) for _ in range(count)]  # type: ignore[arg-type]
    outcomes = await backend.store.step_insert_many(steps)
    assert all(isinstance(o, InsertOutcome) for o in outcomes)
    return [o.step_id for o in outcomes if isinstance(o, InsertOutcome)]


async def walk(backend: Backend, where: StepListFilter, size: int) -> list[list[str]]:
    """Every page of a listing, as step ids."""
    pages: list[list[str]] = []
    after = None
    while True:
        page = await backend.store.step_list_page(where, after, size + 1)
        pages.append([step.step_id for step in page[:size]])
        if len(page) <= size:
            return pages
        after = StepListPosition(page[size - 1].created_ts, page[size - 1].step_id)


async def test_pages_walk_every_step_newest_first_once(backend: Backend) -> None:
    first = await submit_many(backend, 3)
    second = await submit_many(backend, 4)  # later statement: newer
    expected = sorted(second, reverse=True) + sorted(first, reverse=True)

    pages = await walk(backend, StepListFilter(), 2)

    assert [len(page) for page in pages] == [2, 2, 2, 1]
    assert [step_id for page in pages for step_id in page] == expected


async def test_filters_by_status_type_and_client_key(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    [done] = await submit_many(backend, 1)
    [failed] = await submit_many(backend, 1)
    [other] = await submit_many(backend, 1, type="other")
    [keyed] = await submit_many(backend, 1, idempotency_key="order-42")
    claimed = {s.step_id: s for s in await store.step_claim_batch("pod-a", ["hello_world"], 8)}
    await store.step_finish_many(
        [
            StepOutcome(claimed[done], "pod-a", result_json="1"),
            StepOutcome(claimed[failed], "pod-a", error={"type": "E", "message": "m"}),
        ]
    )

    async def ids(**where: object) -> list[str]:
        page = await store.step_list_page(StepListFilter(**where), None, 10)  # type: ignore[arg-type]
        return [step.step_id for step in page]

    assert await ids(statuses=("failed",)) == [failed]
    assert await ids(statuses=("completed", "failed")) == [failed, done]
    assert await ids(statuses=("pending",)) == [other]
    assert await ids(statuses=("claimed",)) == [keyed]
    assert await ids(type="other") == [other]
    assert await ids(idempotency_key="order-42") == [keyed]
    assert await ids(idempotency_key="order-43") == []
    assert await ids(type="other", statuses=("failed",)) == []


async def test_filters_by_creation_time(backend: Backend) -> None:
    old = await submit_many(backend, 2)
    for step_id in old:
        await backend.age_step(step_id, 3600)
    new = await submit_many(backend, 1)
    boundary = (await backend.store.step_get(new[0])).created_ts - timedelta(minutes=30)

    after = await backend.store.step_list_page(StepListFilter(created_after=boundary), None, 10)
    before = await backend.store.step_list_page(StepListFilter(created_before=boundary), None, 10)

    assert [step.step_id for step in after] == new
    assert sorted(step.step_id for step in before) == sorted(old)
