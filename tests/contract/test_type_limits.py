"""The store contract for fleet-wide limits per step type: the claim never takes more than a
type's max_concurrency or its rate bucket allows, other types are unaffected, and the
limits' CRUD and reconcile."""

import asyncio
from dataclasses import replace

import pytest

from fleetq_server import errors
from fleetq_server.store.records import StepOutcome, TypeLimit
from fleetq_server.submission import SubmitRequest, prepare_step
from tests.contract.conftest import Backend

REQUEST = SubmitRequest(
    type="heavy", args={}, metadata=None, priority=0, max_retries=3, idempotency_key=None
)


async def submit(backend: Backend, count: int, **changes: object) -> None:
    steps = [prepare_step(replace(REQUEST, **changes)) for _ in range(count)]  # type: ignore[arg-type]
    await backend.store.step_insert_many(steps)


async def test_max_concurrency_caps_a_type_across_pods_and_leaves_others_alone(
    backend: Backend,
) -> None:
    store = backend.store
    for pod in ("pod-a", "pod-b"):
        await store.pod_register(pod, 8)
    await store.type_limit_put(TypeLimit("heavy", max_concurrency=3))
    await submit(backend, 10, priority=100)
    await submit(backend, 4, type="light")

    first = await store.step_claim_batch("pod-a", ["heavy", "light"], 8)
    second = await store.step_claim_batch("pod-b", ["heavy", "light"], 8)

    # The burst of high-priority heavy steps does not take every slot: light ones run too.
    assert [s.type for s in first] == ["heavy"] * 3 + ["light"] * 4
    assert second == []
    await store.step_finish_many([StepOutcome(first[0], "pod-a", result_json="1")])
    assert [s.type for s in await store.step_claim_batch("pod-b", ["heavy"], 8)] == ["heavy"]
    [usage] = await store.type_limit_list()
    assert (usage.limit.max_concurrency, usage.in_flight, usage.source) == (3, 3, "api")


async def test_a_limit_of_zero_holds_the_type_and_lifting_it_frees_it(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    await store.type_limit_put(TypeLimit("heavy", max_concurrency=0))
    await submit(backend, 2)
    assert await store.step_claim_batch("pod-a", ["heavy"], 8) == []
    await store.type_limit_delete("heavy")
    assert len(await store.step_claim_batch("pod-a", ["heavy"], 8)) == 2
    with pytest.raises(errors.NotFoundError):
        await store.type_limit_delete("heavy")


async def test_the_rate_bucket_allows_a_burst_then_refills(backend: Backend) -> None:
    store = backend.store
    await store.pod_register("pod-a", 8)
    await store.type_limit_put(TypeLimit("heavy", rate_per_second=0.001, burst=2))
    await submit(backend, 5)
    assert len(await store.step_claim_batch("pod-a", ["heavy"], 8)) == 2
    # A thousandth of a token a second: nothing more for now.
    assert await store.step_claim_batch("pod-a", ["heavy"], 8) == []
    await store.type_limit_put(TypeLimit("heavy", rate_per_second=1000.0, burst=2))
    await asyncio.sleep(0.01)  # ten tokens' worth of refill, capped at the burst
    assert len(await store.step_claim_batch("pod-a", ["heavy"], 8)) == 2


async def test_concurrent_claims_never_exceed_the_limit(backend: Backend) -> None:
    store = backend.store
    pods = [f"pod-{i}" for i in range(6)]
    for pod in pods:
        await store.pod_register(pod, 8)
    await store.type_limit_put(TypeLimit("heavy", max_concurrency=5))
    await submit(backend, 40)
    claims = await asyncio.gather(*(store.step_claim_batch(pod, ["heavy"], 8) for pod in pods))
    assert sum(len(claim) for claim in claims) == 5


async def test_reconcile_sets_file_limits_and_lifts_the_ones_dropped(backend: Backend) -> None:
    store = backend.store
    await store.type_limit_put(TypeLimit("api-type", max_concurrency=1))
    assert await store.type_limit_reconcile([TypeLimit("a", 2), TypeLimit("b", 3)]) == []
    assert await store.type_limit_reconcile([TypeLimit("a", 4)]) == ["b"]
    listed = {
        r.limit.step_type: (r.limit.max_concurrency, r.source)
        for r in await store.type_limit_list()
    }
    assert listed == {"a": (4, "file"), "api-type": (1, "api")}
