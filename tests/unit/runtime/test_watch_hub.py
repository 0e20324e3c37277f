"""StepWatchHub on the in-memory store: shared reads fanned out to watchers, registration
in the store while a step has watchers, and the end at a terminal state."""

from collections.abc import AsyncIterator

import pytest

from fleetq_server import errors
from fleetq_server.runtime.state import PodState
from fleetq_server.runtime.watch import StepWatchHub
from fleetq_server.store.records import StepOutcome, StepRecord
from tests.support.memory_store import MemoryStore
from tests.unit.runtime.helpers import submit


@pytest.fixture
async def hub(store: MemoryStore, state: PodState) -> AsyncIterator[StepWatchHub]:
    hub = StepWatchHub(store, state, interval=60)
    hub.start()
    yield hub
    await hub.stop()


async def test_watchers_see_the_current_state_then_each_change_until_terminal(
    store: MemoryStore, hub: StepWatchHub
) -> None:
    step_id = await submit(store)
    first, second = hub.watch(step_id), hub.watch(step_id)

    assert (await anext(first)).status == "pending"
    assert (await anext(second)).status == "pending"
    assert store.watches == {(step_id, "pod-a")}  # one registration for both
    [claimed] = await store.step_claim_batch("pod-a", ["echo"], 1)
    assert (await anext(first)).status == "claimed"
    assert (await anext(second)).status == "claimed"
    await store.step_finish_many([StepOutcome(claimed, "pod-a", result_json='{"ok": 1}')])
    done: StepRecord = await anext(first)
    assert (done.status, done.result) == ("completed", {"ok": 1})
    assert (await anext(second)).status == "completed"

    with pytest.raises(StopAsyncIteration):
        await anext(first)
    assert store.watches == {(step_id, "pod-a")}  # the second watcher is still open
    with pytest.raises(StopAsyncIteration):
        await anext(second)
    assert store.watches == set()
    assert hub.watcher_count == 0


async def test_a_missed_notification_is_caught_by_the_periodic_re_read(
    store: MemoryStore, hub: StepWatchHub
) -> None:
    step_id = await submit(store)
    watcher = hub.watch(step_id)
    assert (await anext(watcher)).status == "pending"
    store.watches.clear()  # as if the change raced the registration: no notification
    await store.step_claim_batch("pod-a", ["echo"], 1)

    await hub.run_once()  # what the interval runs

    assert (await anext(watcher)).status == "claimed"
    await watcher.aclose()


async def test_watching_an_unknown_step_is_not_found_and_leaves_no_registration(
    store: MemoryStore, hub: StepWatchHub
) -> None:
    with pytest.raises(errors.NotFoundError):
        await anext(hub.watch("step_missing"))
    assert store.watches == set()
    assert hub.watcher_count == 0
