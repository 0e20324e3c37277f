"""StepExecutor on the in-memory store: outcomes, retry or fail, fencing, and a database
that comes back."""

import asyncio
from typing import Any

from fleetq_server.handlers import StepContext
from fleetq_server.runtime.executor import StepExecutor
from fleetq_server.runtime.retry_policy import RetryPolicy
from fleetq_server.runtime.state import PodState
from tests.support.memory_store import MemoryStore
from tests.support.waiting import until
from tests.unit.runtime.helpers import claim_one, lose_claim, registry

NO_BACKOFF = RetryPolicy(base_s=0.0, max_s=0.0)


async def double(args: dict[str, Any], context: StepContext) -> int:
    return int(args["n"]) * 2


async def explode(args: dict[str, Any], context: StepContext) -> None:
    raise RuntimeError("boom")


async def nul_result(args: dict[str, Any], context: StepContext) -> str:
    return "a\x00b"


def executor(store: MemoryStore, state: PodState, **handlers: object) -> StepExecutor:
    return StepExecutor(store, registry(**handlers), state, NO_BACKOFF, on_slot_free=lambda: None)


async def run(executor: StepExecutor, store: MemoryStore, step_type: str, **changes: object) -> str:
    """Claim a step of `step_type`, launch it and wait until its outcome is written."""
    step = await claim_one(store, type=step_type, **changes)
    executor.launch(step)
    await until(lambda: not executor.running, description="the outcome write")
    return step.step_id


async def test_a_result_completes_the_step(store: MemoryStore, state: PodState) -> None:
    step_id = await run(executor(store, state, echo=double), store, "echo")
    record = await store.step_get(step_id)
    assert (record.status, record.result, record.error) == ("completed", 2, None)
    assert state.current_capacity == 0


async def test_a_failure_retries_while_retries_are_left_then_fails(
    store: MemoryStore, state: PodState
) -> None:
    run_steps = executor(store, state, echo=explode)
    step_id = await run(run_steps, store, "echo", max_retries=1)
    record = await store.step_get(step_id)
    assert (record.status, record.retry_count) == ("pending", 1)
    [again] = await store.step_claim_batch("pod-a", ["echo"], 1)
    run_steps.launch(again)
    await until(lambda: not run_steps.running)
    record = await store.step_get(step_id)
    assert (record.status, record.retry_count) == ("failed", 1)
    assert record.error == {"type": "RuntimeError", "message": "boom"}


async def test_an_outcome_the_database_cannot_store_is_recorded_as_a_failure(
    store: MemoryStore, state: PodState
) -> None:
    step_id = await run(executor(store, state, echo=nul_result), store, "echo", max_retries=0)
    record = await store.step_get(step_id)
    assert record.status == "failed" and record.error is not None
    assert record.error["type"] == "ValueError"


async def test_the_outcome_of_a_step_reassigned_meanwhile_is_fenced_out(
    store: MemoryStore, state: PodState
) -> None:
    step = await claim_one(store)
    await store.step_release([step], "pod-a")
    await store.pod_register("pod-b", 4)
    [taken] = await store.step_claim_batch("pod-b", ["echo"], 1)
    run_steps = executor(store, state, echo=double)
    run_steps.launch(step)
    await until(lambda: not run_steps.running)
    record = await store.step_get(step.step_id)
    assert (record.status, record.claimed_by, record.attempt) == ("claimed", "pod-b", taken.attempt)


async def test_an_outcome_is_written_once_the_database_is_back(
    store: MemoryStore, state: PodState
) -> None:
    run_steps = executor(store, state, echo=double)
    step = await claim_one(store)
    store.available = False
    run_steps.launch(step)
    await until(lambda: state.current_capacity == 0, description="the handler to return")
    assert run_steps.running, "the write keeps retrying while the database is down"
    store.available = True
    await until(lambda: not run_steps.running, description="the outcome write")
    assert (await store.step_get(step.step_id)).status == "completed"


async def test_a_lost_claim_made_again_under_a_running_token_does_not_run_twice(
    store: MemoryStore, state: PodState
) -> None:
    release = asyncio.Event()
    calls: list[int] = []

    async def counted(args: dict[str, Any], context: StepContext) -> int:
        calls.append(context.attempt)
        await release.wait()
        return len(calls)

    run_steps = executor(store, state, echo=counted)
    step = await claim_one(store)
    assert run_steps.launch(step)
    await until(lambda: calls, description="the handler to start")
    lose_claim(store, step.step_id)
    [again] = await store.step_claim_batch("pod-a", ["echo"], 1)
    assert (again.step_id, again.attempt) == (step.step_id, step.attempt)

    assert not run_steps.launch(again)

    release.set()
    await until(lambda: not run_steps.running, description="the outcome write")
    record = await store.step_get(step.step_id)
    # The one execution's outcome ended the claim that replaced the lost one.
    assert (record.status, record.result, record.attempt) == ("completed", 1, step.attempt)
    assert calls == [step.attempt]


async def test_an_earlier_attempt_finishing_leaves_the_later_attempt_of_its_step_tracked(
    store: MemoryStore, state: PodState
) -> None:
    releases: dict[int, asyncio.Event] = {}

    async def held(args: dict[str, Any], context: StepContext) -> int:
        releases[context.attempt] = asyncio.Event()
        await releases[context.attempt].wait()
        return context.attempt

    run_steps = executor(store, state, echo=held)
    first = await claim_one(store)
    assert run_steps.launch(first)
    [first_task] = [running.task for running in run_steps.running]
    await until(lambda: first.attempt in releases, description="the first handler")
    # The step is given back and claimed again here while its first attempt still runs.
    await store.step_release([first], "pod-a")
    [second] = await store.step_claim_batch("pod-a", ["echo"], 1)
    assert second.attempt == first.attempt + 1
    assert run_steps.launch(second)
    await until(lambda: second.attempt in releases, description="the second handler")

    releases[first.attempt].set()
    await first_task  # its outcome is fenced out: the step's attempt has moved on

    assert [r.step.attempt for r in run_steps.running] == [second.attempt]
    assert state.current_capacity == 1
    releases[second.attempt].set()
    await until(lambda: not run_steps.running, description="the second outcome")
    record = await store.step_get(first.step_id)
    assert (record.status, record.result) == ("completed", second.attempt)


async def test_a_step_back_to_pending_calls_on_requeued_after_its_slot_was_freed(
    store: MemoryStore, state: PodState
) -> None:
    calls: list[str] = []
    run_steps = StepExecutor(
        store,
        registry(echo=explode),
        state,
        NO_BACKOFF,
        on_slot_free=lambda: calls.append("slot"),
        on_requeued=lambda: calls.append("requeued"),
    )
    await run(run_steps, store, "echo", max_retries=1)
    assert calls == ["slot", "requeued"]
