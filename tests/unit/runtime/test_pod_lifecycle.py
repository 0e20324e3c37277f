"""Pod on the in-memory store: start, a step through to its outcome, re-registration when
presumed dead, and a drain that releases what it could not finish."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fleetq_server.config import Settings
from fleetq_server.handlers import StepContext
from fleetq_server.runtime.pod import Pod
from tests.support.memory_store import MemoryStore
from tests.support.waiting import until
from tests.unit.runtime.helpers import registry, submit

SETTINGS = Settings(pod_id="pod-a", heartbeat_interval=0.01, poll_interval=60)


@pytest.fixture
def gate() -> asyncio.Event:
    """The `wait` handler returns once this is set."""
    return asyncio.Event()


@pytest.fixture
async def pod(store: MemoryStore, gate: asyncio.Event) -> AsyncIterator[Pod]:
    async def echo(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
        return args

    async def wait(args: dict[str, Any], context: StepContext) -> None:
        await gate.wait()

    pod = Pod(SETTINGS, store, registry(echo=echo, wait=wait))
    await pod.start()
    yield pod
    if not pod.state.draining:
        await pod.shutdown(grace=0)


async def test_a_submit_wakes_the_pod_and_its_step_completes(store: MemoryStore, pod: Pod) -> None:
    assert pod.state.is_leader and pod.state.healthy
    await until(lambda: pod.listener._subscription.connected, description="the listener")
    step_id = await submit(store, args={"x": 1})
    await until(lambda: store.steps[step_id].status == "completed", description="the outcome")
    assert (await store.step_get(step_id)).result == {"x": 1}


async def test_a_pod_presumed_dead_comes_back_under_a_new_id(store: MemoryStore, pod: Pod) -> None:
    await store.pod_mark_down("pod-a")  # as the leader's recovery does to a silent pod
    await until(lambda: pod.state.pod_id == "pod-a-r2", description="re-registration")
    assert store.pods["pod-a-r2"].status == "up" and not pod.state.fenced


async def test_shutdown_releases_unfinished_steps_without_spending_a_retry(
    store: MemoryStore, pod: Pod
) -> None:
    step_id = await submit(store, type="wait")
    await until(lambda: store.steps[step_id].status == "claimed", description="the claim")
    await pod.shutdown(grace=0)
    record = await store.step_get(step_id)
    assert (record.status, record.retry_count, record.claimed_by) == ("pending", 0, None)
    assert store.pods["pod-a"].status == "down"
    assert not any(loop.running for loop in pod.loops)
