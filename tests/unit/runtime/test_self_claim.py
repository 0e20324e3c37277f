"""A submit the receiving pod claims itself: when it may (its types, due now, a free slot,
a pod that may claim), up to its free capacity, and like any claim when an answer is lost."""

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fleetq_server import errors
from fleetq_server.handlers import StepContext
from fleetq_server.runtime.claimer import ClaimLoop, self_claim_limit
from fleetq_server.runtime.executor import StepExecutor
from fleetq_server.runtime.retry_policy import RetryPolicy
from fleetq_server.runtime.state import PodState
from fleetq_server.store.records import InsertOutcome, NewStep
from fleetq_server.submission import prepare_step
from tests.support.memory_store import MemoryStore
from tests.support.waiting import until
from tests.unit.runtime.helpers import REQUEST, lose_next_answer, registry, submit


def new_step(**changes: object) -> NewStep:
    return prepare_step(replace(REQUEST, **changes))  # type: ignore[arg-type]


@pytest.fixture
def release() -> asyncio.Event:
    """Set to let the blocked handlers return."""
    return asyncio.Event()


@pytest.fixture
def loop(store: MemoryStore, state: PodState, release: asyncio.Event) -> ClaimLoop:
    async def blocked(args: dict[str, Any], context: StepContext) -> None:
        await release.wait()

    executor = StepExecutor(
        store, registry(echo=blocked), state, RetryPolicy(0, 0), on_slot_free=lambda: None
    )
    return ClaimLoop(store, state, executor, ["echo"], poll_interval=60)


def running(loop: ClaimLoop) -> list[str]:
    return [r.step.step_id for r in loop._executor.running]


def test_the_limit_counts_due_steps_of_the_pods_types_up_to_its_free_capacity(
    state: PodState,
) -> None:
    steps = [new_step() for _ in range(3)]
    assert self_claim_limit(state, ["echo"], steps) == 3
    assert self_claim_limit(state, ["echo"], [*steps, new_step(), new_step()]) == 4
    state.current_capacity = 3
    assert self_claim_limit(state, ["echo"], steps) == 1
    state.current_capacity = 4
    assert self_claim_limit(state, ["echo"], steps) == 0


def test_the_limit_leaves_out_other_types_and_scheduled_steps(state: PodState) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    assert self_claim_limit(state, ["echo"], [new_step(type="other")]) == 0
    assert self_claim_limit(state, ["echo"], [new_step(delay_s=5.0)]) == 0
    assert self_claim_limit(state, ["echo"], [new_step(run_at=later), new_step()]) == 1


@pytest.mark.parametrize("condition", ["draining", "fenced", "database_down"])
def test_the_limit_is_zero_while_the_pod_may_not_claim(state: PodState, condition: str) -> None:
    if condition == "database_down":
        state.database_ok = False
    else:
        setattr(state, condition, True)
    assert self_claim_limit(state, ["echo"], [new_step()]) == 0


async def test_a_received_step_is_inserted_claimed_and_started(
    store: MemoryStore, loop: ClaimLoop, release: asyncio.Event
) -> None:
    step = new_step()
    outcomes = await loop.insert_and_claim([step])
    assert outcomes == [InsertOutcome(step_id=step.step_id, created=True)]
    assert running(loop) == [step.step_id]
    assert (await store.step_get(step.step_id)).claimed_by == "pod-a"
    release.set()
    await loop._executor.wait_all(5)


async def test_an_older_better_pending_step_is_started_instead(
    store: MemoryStore, state: PodState, loop: ClaimLoop, release: asyncio.Event
) -> None:
    older = await submit(store, priority=5)
    state.current_capacity = 3  # one slot free
    step = new_step(priority=5)
    await loop.insert_and_claim([step])
    assert running(loop) == [older]
    assert (await store.step_get(step.step_id)).status == "pending"
    release.set()
    await loop._executor.wait_all(5)


async def test_with_no_free_slot_the_pod_leaves_the_insert_to_the_caller(
    store: MemoryStore, state: PodState, loop: ClaimLoop
) -> None:
    state.current_capacity = 4
    step = new_step()
    assert await loop.insert_and_claim([step]) is None
    with pytest.raises(errors.NotFoundError):
        await store.step_get(step.step_id)


async def test_a_draining_pod_claims_nothing(
    store: MemoryStore, state: PodState, loop: ClaimLoop
) -> None:
    state.draining = True  # as Pod.shutdown does before it stops the claim loop
    await loop.stop()
    assert await loop.insert_and_claim([new_step()]) is None
    assert running(loop) == []


async def test_a_claim_answer_lost_after_the_insert_keeps_the_submit_and_is_released(
    store: MemoryStore, loop: ClaimLoop
) -> None:
    step = new_step()
    lose_next_answer(store, "step_claim_batch")
    outcomes = await loop.insert_and_claim([step])
    assert outcomes == [InsertOutcome(step_id=step.step_id, created=True)]  # it stands
    assert (await store.step_get(step.step_id)).status == "claimed"
    assert running(loop) == []
    # The next one does not claim in the dark: the claim loop looks for orphans first.
    assert await loop.insert_and_claim([new_step()]) is None
    await loop.run_once()
    assert running(loop) == [step.step_id]  # given back, then claimed again and running
    assert (await store.step_get(step.step_id)).attempt == 2


def claims_now(loop: ClaimLoop) -> bool:
    """Whether the claim loop was asked to claim (its wake-up is set), then forget it."""
    woken = loop._wake_event.is_set()
    loop._wake_event.clear()
    return woken


@pytest.fixture
async def drained(store: MemoryStore, loop: ClaimLoop) -> ClaimLoop:
    """A listening claim loop whose last claim and self-claim left nothing of its types."""
    loop.listening = lambda: True
    await loop.run_once()  # learns that no step is due later either
    await loop.insert_and_claim([new_step()])
    claims_now(loop)
    return loop


async def test_a_freed_slot_claims_nothing_when_the_self_claim_left_nothing_waiting(
    drained: ClaimLoop, release: asyncio.Event
) -> None:
    drained.slot_freed()
    assert not claims_now(drained)
    release.set()
    await drained._executor.wait_all(5)


async def test_a_freed_slot_claims_after_any_wake_up_since_the_self_claim(
    drained: ClaimLoop, release: asyncio.Event
) -> None:
    drained.wake()  # a notification: a submit, a release or a requeue somewhere
    claims_now(drained)
    drained.slot_freed()
    assert claims_now(drained)
    release.set()
    await drained._executor.wait_all(5)


async def test_a_freed_slot_claims_while_the_pod_hears_no_notifications(
    drained: ClaimLoop, release: asyncio.Event
) -> None:
    drained.listening = lambda: False
    drained.slot_freed()
    assert claims_now(drained)
    release.set()
    await drained._executor.wait_all(5)


async def test_a_freed_slot_claims_after_a_self_claim_that_left_a_step_pending(
    store: MemoryStore, state: PodState, drained: ClaimLoop, release: asyncio.Event
) -> None:
    state.current_capacity = 3  # one slot free, two steps received
    await drained.insert_and_claim([new_step(), new_step()])
    drained.slot_freed()
    assert claims_now(drained)
    release.set()
    await drained._executor.wait_all(5)


async def test_a_freed_slot_claims_once_a_step_known_to_fall_due_may_have(
    store: MemoryStore, loop: ClaimLoop, release: asyncio.Event
) -> None:
    loop.listening = lambda: True
    await submit(store, delay_s=1.0)  # not due at the claims below
    await loop.run_once()
    await loop.insert_and_claim([new_step()])
    claims_now(loop)
    await until(lambda: time.monotonic() >= loop._due_by, description="the step's due time")
    loop.slot_freed()
    assert claims_now(loop)
    release.set()
    await loop._executor.wait_all(5)
