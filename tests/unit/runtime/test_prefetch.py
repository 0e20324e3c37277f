"""Claims ahead of free slots on the in-memory store: while handlers are short a claim
takes up to a few capacities more (fewer as they near PREFETCH_BELOW_S), those steps start
as slots free and never more than the capacity run at once; long handlers claim only free
slots; a step that waited behind handlers that turned out long is given back; a cancel or
a drain reaches a step claimed ahead before its handler ever runs."""

import asyncio
from typing import Any

import pytest

from fleetq_server.config import Settings
from fleetq_server.handlers import StepContext
from fleetq_server.runtime import claims_ahead
from fleetq_server.runtime.claimer import ClaimLoop
from fleetq_server.runtime.claims_ahead import PREFETCH_BELOW_S
from fleetq_server.runtime.executor import StepExecutor
from fleetq_server.runtime.pod import Pod
from fleetq_server.runtime.retry_policy import RetryPolicy
from fleetq_server.runtime.state import PodState
from tests.support.memory_store import MemoryStore
from tests.support.waiting import until
from tests.unit.runtime.helpers import registry, submit


class Handlers:
    """`echo` steps with `{"s": seconds}` sleep that long; the others wait for `release`.
    Counts the handlers running at once and which steps ran."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = 0
        self.peak = 0
        self.ran: list[str] = []

    async def echo(self, args: dict[str, Any], context: StepContext) -> None:
        self.ran.append(context.step_id)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if "s" in args:
                await asyncio.sleep(args["s"])
            else:
                await self.release.wait()
        finally:
            self.running -= 1


@pytest.fixture
def handlers() -> Handlers:
    return Handlers()


@pytest.fixture(autouse=True)
def patient(monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps claimed ahead wait as long as a test needs, unless it says otherwise."""
    monkeypatch.setattr(claims_ahead, "GIVE_BACK_MIN_S", 60.0)


def claim_loop(store: MemoryStore, state: PodState, handlers: Handlers) -> ClaimLoop:
    executor = StepExecutor(
        store,
        registry(echo=handlers.echo),
        state,
        RetryPolicy(0, 0),
        on_slot_free=lambda: None,
        prefetch=True,
    )
    return ClaimLoop(store, state, executor, ["echo"], poll_interval=60)


async def run_one(store: MemoryStore, loop: ClaimLoop, seconds: float) -> None:
    """One step that runs `seconds`, claimed and finished: what the pod learns run times from."""
    step_id = await submit(store, args={"s": seconds})
    await loop.run_once()
    await until(lambda: store.steps[step_id].status == "completed", description="the outcome")


async def test_short_handlers_claim_capacities_ahead_and_never_run_more_than_capacity(
    store: MemoryStore, state: PodState, handlers: Handlers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A no-op handler counts as short however slow a loaded machine makes it: the line is
    # full (its room shrinks once handlers average PREFETCH_BELOW_S / LINE_CAPACITIES).
    monkeypatch.setattr(claims_ahead, "PREFETCH_BELOW_S", 60.0)
    loop = claim_loop(store, state, handlers)
    await run_one(store, loop, 0.0)
    ahead = claims_ahead.LINE_CAPACITIES * 4
    waiting = [await submit(store) for _ in range(4 + ahead + 10)]

    await loop.run_once()  # 4 free slots, and LINE_CAPACITIES capacities ahead of them
    claimed = [s for s in waiting if store.steps[s].status == "claimed"]
    assert claimed == waiting[: 4 + ahead]
    await until(lambda: handlers.running == 4, description="the handlers")
    assert [r.waiting for r in loop._executor.running].count(True) == ahead

    handlers.release.set()  # the 4 waiting start as the first 4 end
    await until(lambda: all(store.steps[s].status == "completed" for s in claimed))
    assert handlers.peak == 4 and set(claimed) <= set(handlers.ran)


@pytest.mark.parametrize(
    ("run_s", "capacities"),
    [
        (0.0, claims_ahead.LINE_CAPACITIES),
        (PREFETCH_BELOW_S / 4, 4),
        (PREFETCH_BELOW_S / 3.5, 3),
        (PREFETCH_BELOW_S * 0.6, 1),
    ],
)
def test_the_line_holds_about_prefetch_below_s_of_handlers_per_slot(
    run_s: float, capacities: int
) -> None:
    ahead = claims_ahead.ClaimsAhead(enabled=True, capacity=4)
    ahead.ran(run_s)

    assert ahead.room({}) == capacities * 4


async def test_long_handlers_claim_only_their_free_slots(
    store: MemoryStore, state: PodState, handlers: Handlers
) -> None:
    loop = claim_loop(store, state, handlers)
    await run_one(store, loop, PREFETCH_BELOW_S * 3)
    steps = [await submit(store) for _ in range(10)]

    await loop.run_once()

    assert [store.steps[s].status for s in steps].count("claimed") == 4
    handlers.release.set()
    await loop._executor.wait_all(5)


async def test_a_step_claimed_ahead_behind_long_handlers_is_given_back_and_not_claimed_again(
    store: MemoryStore, state: PodState, handlers: Handlers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(claims_ahead, "GIVE_BACK_MIN_S", 0.01)
    loop = claim_loop(store, state, handlers)
    await run_one(store, loop, 0.0)  # short handlers so far: claims go ahead
    steps = [await submit(store) for _ in range(8)]
    await loop.run_once()  # 4 run (and now hold their slots), 4 wait
    ahead = steps[4:]
    assert all(store.steps[s].status == "claimed" for s in ahead)

    await until(
        lambda: all(store.steps[s].status == "pending" for s in ahead), description="give-back"
    )
    await loop.run_once()  # handlers hold their slots too long to claim ahead of them

    assert all(store.steps[s].status == "pending" for s in ahead)
    assert all(store.steps[s].retry_count == 0 for s in ahead)
    handlers.release.set()
    await loop._executor.wait_all(5)
    assert handlers.peak == 4 and not set(ahead) & set(handlers.ran)


async def test_a_cancel_request_ends_a_step_claimed_ahead_without_running_it(
    store: MemoryStore, state: PodState, handlers: Handlers
) -> None:
    loop = claim_loop(store, state, handlers)
    await run_one(store, loop, 0.0)
    steps = [await submit(store) for _ in range(8)]
    await loop.run_once()
    ahead = steps[-1]
    await until(lambda: handlers.running == 4, description="the handlers")

    assert await store.step_cancel(ahead) == "claimed"
    assert loop._executor.request_cancel(ahead)
    await until(lambda: store.steps[ahead].status == "cancelled", description="the cancel")

    handlers.release.set()
    await loop._executor.wait_all(5)
    assert ahead not in handlers.ran and store.steps[ahead].retry_count == 0


async def test_a_draining_pod_gives_back_steps_claimed_ahead_and_finishes_the_running(
    store: MemoryStore, handlers: Handlers
) -> None:
    settings = Settings(
        pod_id="pod-a", heartbeat_interval=0.01, poll_interval=60, prefetch_claims=True
    )
    pod = Pod(settings, store, registry(echo=handlers.echo))  # capacity 8
    await pod.start()
    await until(lambda: pod.listener._subscription.connected, description="the listener")
    await submit(store, args={"s": 0.0})
    await until(lambda: len(handlers.ran) == 1 and handlers.running == 0)
    steps = [await submit(store) for _ in range(10)]
    await until(lambda: [store.steps[s].status for s in steps].count("claimed") == 10)
    assert handlers.running == 8

    drain = asyncio.create_task(pod.shutdown(grace=30))
    await until(lambda: not any(r.waiting for r in pod.executor.running))
    handlers.release.set()
    await drain

    statuses = [(store.steps[s].status, store.steps[s].retry_count) for s in steps]
    assert statuses == [("completed", 0)] * 8 + [("pending", 0)] * 2
    assert handlers.peak == 8 and not set(steps[8:]) & set(handlers.ran)
