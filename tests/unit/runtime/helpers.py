"""Steps and registries for the runtime's unit tests."""

from dataclasses import replace

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
