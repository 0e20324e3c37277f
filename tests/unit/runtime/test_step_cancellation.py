"""Cancel requests reaching running steps on the in-memory store: an async handler is
cancelled, a blocking one sees `context.cancelled`, and both steps end cancelled."""

import asyncio
import time
from typing import Any

from fleetq_server.handlers import StepContext
from fleetq_server.runtime.cancellation import CancelListener
from fleetq_server.runtime.executor import StepExecutor
from fleetq_server.runtime.retry_policy import RetryPolicy
from fleetq_server.runtime.state import PodState
from tests.support.memory_store import MemoryStore
from tests.support.waiting import until
from tests.unit.runtime.helpers import claim_one, registry


def forever(started: asyncio.Event) -> Any:
    """An async handler that sets `started` and then waits for ever."""

    async def handler(args: dict[str, Any], context: StepContext) -> None:
        started.set()
        await asyncio.Event().wait()

    return handler


def polite(args: dict[str, Any], context: StepContext) -> str:
    """A blocking handler that stops when asked."""
    deadline = time.monotonic() + 30
    while not context.cancelled and time.monotonic() < deadline:
        time.sleep(0.005)
    return "stopped early" if context.cancelled else "ran to the end"


def executor(store: MemoryStore, state: PodState, **handlers: object) -> StepExecutor:
    policy = RetryPolicy(base_s=0.0, max_s=0.0)
    return StepExecutor(store, registry(**handlers), state, policy, on_slot_free=lambda: None)


async def test_a_cancel_request_cancels_an_async_handler_and_the_step_ends_cancelled(
    store: MemoryStore, state: PodState
) -> None:
    started = asyncio.Event()
    run_steps = executor(store, state, wait=forever(started))
    listener = CancelListener(store, state, run_steps, interval=60)
    await listener.run_once()  # connects the cancel subscription
    step = await claim_one(store, type="wait")
    run_steps.launch(step)
    await started.wait()

    assert await store.step_cancel(step.step_id) == "claimed"
    await until(lambda: not run_steps.running, description="the cancelled outcome")

    record = await store.step_get(step.step_id)
    assert (record.status, record.retry_count) == ("cancelled", 0)
    assert [(a.outcome, a.error and a.error["type"]) for a in record.attempts] == [
        ("cancelled", "Cancelled")
    ]
    await listener.stop()


async def test_a_blocking_handler_sees_cancelled_through_the_poll(
    store: MemoryStore, state: PodState
) -> None:
    run_steps = executor(store, state, wait=polite)
    listener = CancelListener(store, state, run_steps, interval=60)  # never connected: polls
    step = await claim_one(store, type="wait")
    run_steps.launch(step)
    await until(lambda: bool(run_steps.running and run_steps.running[0].context))
    await store.step_cancel(step.step_id)

    await listener.run_once()
    await until(lambda: not run_steps.running, description="the handler to stop")

    record = await store.step_get(step.step_id)
    assert record.status == "cancelled" and record.result == "stopped early"


async def test_shutdown_still_stops_a_step_without_writing_it(
    store: MemoryStore, state: PodState
) -> None:
    started = asyncio.Event()
    run_steps = executor(store, state, wait=forever(started))
    step = await claim_one(store, type="wait")
    run_steps.launch(step)
    await started.wait()

    stopped = await run_steps.cancel_all()

    assert [r.step.step_id for r in stopped] == [step.step_id]
    assert (await store.step_get(step.step_id)).status == "claimed"
