"""Steps and registries for the runtime's unit tests."""

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from fleetq_server import errors
from fleetq_server.handlers import HandlerRegistry
from fleetq_server.store.records import ClaimedStep
from fleetq_server.submission import SubmitRequest, prepare_step
from tests.support.memory_store import MemoryStore

REQUEST = SubmitRequest(
    type="echo", args={"n": 1}, metadata=None, priority=0, max_retries=1, idempotency_key=None
)


async def submit(store: MemoryStore, **changes: object) -> str:
    step = prepare_step(replace(REQUEST, **changes))  # type: ignore[arg-type]
    await store.step_insert_many([step])
    return step.step_id


async def claim_one(store: MemoryStore, pod_id: str = "pod-a", **changes: object) -> ClaimedStep:
    """A step submitted and claimed by `pod_id`."""
    step_id = await submit(store, **changes)
    [claimed] = await store.step_claim_batch(pod_id, [str(changes.get("type", "echo"))], 1)
    assert claimed.step_id == step_id
    return claimed


def registry(**handlers: object) -> HandlerRegistry:
    """A registry of `step_type=function` handlers."""
    registry = HandlerRegistry()
    for step_type, function in handlers.items():
        registry.add(step_type, function)  # type: ignore[arg-type]
    return registry


def lose_next_answer(
    store: MemoryStore, method: str, before: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Make the next call of `store.method` commit and then fail as a connection dying
    before the answer does (a primary crashing between commit and reply). With `before`,
    that runs instead of the call: a write lost before it was made, while others moved on."""
    real = getattr(store, method)
    calls = 0

    async def unanswered(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > 1:  # once (a caller may hold this function rather than the store)
            return await real(*args, **kwargs)
        if before is None:
            await real(*args, **kwargs)
        else:
            await before()
        raise errors.DatabaseUnavailableError("database unavailable")

    setattr(store, method, unanswered)


def lose_claim(store: MemoryStore, step_id: str) -> None:
    """Undo the claim of `step_id` as a database crash does to a claim whose commit was not
    yet flushed: the step is pending at its previous attempt, held by nobody."""
    step = store.steps[step_id]
    assert step.status == "claimed"
    step.status, step.claimed_by, step.claimed_ts = "pending", None, None
    step.attempt -= 1
