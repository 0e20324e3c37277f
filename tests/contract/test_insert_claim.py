"""The store contract for a submit the receiving pod claims in its own transaction
(`step_insert_claim`): the claim is the ordinary claim, so priority and age, scheduled
steps, type limits and the pod's registration decide it exactly as they decide any claim,
and every step is inserted whatever the claim takes."""

from dataclasses import replace

from fleetq_server.store.ports import StorePort
from fleetq_server.store.records import InsertOutcome, NewStep, TypeLimit
from fleetq_server.submission import SubmitRequest, prepare_step
from tests.contract.conftest import Backend

REQUEST = SubmitRequest(
    type="echo", args={"n": 1}, metadata=None, priority=0, max_retries=3, idempotency_key=None
)


def new_step(**changes: object) -> NewStep:
    return prepare_step(replace(REQUEST, **changes))  # type: ignore[arg-type]


async def statuses(store: StorePort, *step_ids: str) -> list[str]:
    return [(await store.step_get(step_id)).status for step_id in step_ids]


async def test_a_new_step_is_inserted_and_claimed_by_the_receiving_pod(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step = new_step()
    outcomes, claimed, _ = await store.step_insert_claim([step], "pod-a", ["echo"], 1)
    assert outcomes == [InsertOutcome(step_id=step.step_id, created=True)]
    assert [(c.step_id, c.attempt) for c in claimed] == [(step.step_id, 1)]
    record = await store.step_get(step.step_id)
    assert (record.status, record.claimed_by) == ("claimed", "pod-a")


async def test_an_older_step_of_higher_or_equal_priority_is_claimed_first(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    [older_high, older_equal] = [new_step(priority=5), new_step(priority=1)]
    await store.step_insert_many([older_high, older_equal])
    step = new_step(priority=1)
    _, claimed, _ = await store.step_insert_claim([step], "pod-a", ["echo"], 2)
    assert [c.step_id for c in claimed] == [older_high.step_id, older_equal.step_id]
    assert await statuses(store, step.step_id) == ["pending"]


async def test_a_better_new_step_overtakes_older_lower_priority_ones(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    older_low = new_step(priority=0)
    await store.step_insert_many([older_low])
    step = new_step(priority=9)
    _, claimed, _ = await store.step_insert_claim([step], "pod-a", ["echo"], 1)
    assert [c.step_id for c in claimed] == [step.step_id]
    assert await statuses(store, older_low.step_id) == ["pending"]


async def test_a_scheduled_step_is_inserted_but_not_claimed(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    step = new_step(delay_s=60.0)
    outcomes, claimed, _ = await store.step_insert_claim([step], "pod-a", ["echo"], 1)
    assert (outcomes, claimed) == ([InsertOutcome(step_id=step.step_id, created=True)], [])
    assert await statuses(store, step.step_id) == ["pending"]


async def test_a_full_type_limit_leaves_the_new_step_pending(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    await store.type_limit_put(TypeLimit("echo", max_concurrency=1))
    _, [running], _ = await store.step_insert_claim([new_step()], "pod-a", ["echo"], 1)
    step = new_step()
    _, claimed, _ = await store.step_insert_claim([step], "pod-a", ["echo"], 1)
    assert claimed == []
    assert await statuses(store, running.step_id, step.step_id) == ["claimed", "pending"]


async def test_a_pod_that_is_down_inserts_but_claims_nothing(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    await store.pod_mark_down("pod-a")
    step = new_step()
    _, claimed, _ = await store.step_insert_claim([step], "pod-a", ["echo"], 1)
    assert claimed == []
    assert await statuses(store, step.step_id) == ["pending"]


async def test_a_repeated_key_resolves_to_the_existing_step_and_claims_nothing_new(
    backend: Backend,
) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    first = new_step(idempotency_key="k")
    await store.step_insert_many([first])
    again = new_step(idempotency_key="k")
    outcomes, claimed, _ = await store.step_insert_claim([again], "pod-a", ["echo"], 1)
    assert outcomes == [InsertOutcome(step_id=first.step_id, created=False)]
    # The existing step is still the best pending one, so the claim takes it, once.
    assert [c.step_id for c in claimed] == [first.step_id]
