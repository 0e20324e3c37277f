"""ClaimLoop on the in-memory store: best first, up to free capacity, never while it may not."""

import asyncio
from typing import Any

import pytest

from fleetq_server.handlers import StepContext
from fleetq_server.runtime.claimer import ClaimLoop
from fleetq_server.runtime.executor import StepExecutor
from fleetq_server.runtime.retry_policy import RetryPolicy
from fleetq_server.runtime.state import PodState
from tests.support.memory_store import MemoryStore
from tests.unit.runtime.helpers import registry, submit


@pytest.fixture
def release() -> asyncio.Event:
    """Set to let the blocked handlers return."""
    return asyncio.Event()


def claim_loop(store: MemoryStore, state: PodState, release: asyncio.Event) -> ClaimLoop:
    async def blocked(args: dict[str, Any], context: StepContext) -> None:
        await release.wait()

    executor = StepExecutor(
        store, registry(echo=blocked), state, RetryPolicy(0, 0), on_slot_free=lambda: None
    )
    return ClaimLoop(store, state, executor, ["echo"], poll_interval=60)


async def test_claims_up_to_free_capacity_best_first(
    store: MemoryStore, state: PodState, release: asyncio.Event
) -> None:
    low = [await submit(store, priority=0) for _ in range(4)]
    high = await submit(store, priority=9)
    loop = claim_loop(store, state, release)
    await loop.run_once()
    running = [r.step.step_id for r in loop._executor.running]
    assert running == [high, *low[:3]]
    assert state.free_capacity == 0
    await loop.run_once()  # full: claims nothing more
    assert (await store.step_get(low[3])).status == "pending"
    release.set()
    await loop._executor.wait_all(5)


@pytest.mark.parametrize("condition", ["draining", "fenced", "database_down"])
async def test_claims_nothing_while_the_pod_may_not(
    store: MemoryStore, state: PodState, release: asyncio.Event, condition: str
) -> None:
    step_id = await submit(store)
    if condition == "database_down":
        state.database_ok = False
    else:
        setattr(state, condition, True)
    await claim_loop(store, state, release).run_once()
    assert (await store.step_get(step_id)).status == "pending"


async def test_a_full_batch_wakes_the_loop_for_more(
    store: MemoryStore, state: PodState, release: asyncio.Event
) -> None:
    for _ in range(4):
        await submit(store)
    loop = claim_loop(store, state, release)
    await loop.run_once()
    assert loop._wake_event.is_set()
    release.set()
    await loop._executor.wait_all(5)


async def test_the_loop_sleeps_only_until_the_next_scheduled_step_falls_due(
    store: MemoryStore, state: PodState, release: asyncio.Event
) -> None:
    await submit(store, delay_s=30.0)
    await submit(store, type="other", delay_s=5.0)  # not a type this pod runs
    loop = claim_loop(store, state, release)
    assert loop.next_wait() == 60  # nothing known yet: the poll interval

    await loop.run_once()

    assert 20 < loop.next_wait() <= 30
    assert loop.next_wait() == 60  # each answer is used once: the next claim asks again
    store.advance(31)
    await loop.run_once()
    assert len(loop._executor.running) == 1
    release.set()
    await loop._executor.wait_all(5)


async def test_a_step_falling_due_while_the_claim_runs_is_claimed_next_not_a_poll_later(
    store: MemoryStore, state: PodState, release: asyncio.Event
) -> None:
    step_id = await submit(store, delay_s=0.3)
    loop = claim_loop(store, state, release)
    claim = store.step_claim_batch

    async def slow_claim(*args: Any) -> Any:
        claimed = await claim(*args)  # its clock: the step is not due yet
        await asyncio.sleep(0.4)  # the statement's answer arrives after the step fell due
        return claimed

    store.step_claim_batch = slow_claim  # type: ignore[method-assign]
    await loop.run_once()

    assert loop._executor.running == []
    assert loop.next_wait() == 0  # due already: claim again now, not after the 60 s poll
    store.step_claim_batch = claim  # type: ignore[method-assign]
    await loop.run_once()
    assert [r.step.step_id for r in loop._executor.running] == [step_id]
    release.set()
    await loop._executor.wait_all(5)
