"""Outcome writes that claim for the slots they free, and ahead of them
(`ClaimLoop.finish_and_claim`), on the in-memory store: a drain runs on them alone, never
more than the capacity at once and in priority order; the claim loop is woken only when
they leave slots empty; a lost answer loses nothing and spends no retry."""

import asyncio
import time
from typing import Any

import pytest

from fleetq_server.config import Settings
from fleetq_server.handlers import StepContext
from fleetq_server.runtime import claims_ahead
from fleetq_server.runtime.claimer import ClaimLoop
from fleetq_server.runtime.executor import StepExecutor
from fleetq_server.runtime.pod import Pod
from fleetq_server.runtime.retry_policy import RetryPolicy
from fleetq_server.runtime.state import PodState
from tests.support.memory_store import MemoryStore
from tests.support.waiting import until
from tests.unit.runtime.helpers import lose_next_answer, registry, submit


class Recorder:
    """A handler that records the order steps start in and the most running at once,
    and counts the store's claims by kind."""

    def __init__(self, store: MemoryStore) -> None:
        self.started: list[str] = []
        # Steps with {"hold": true} run until it is set.
        self.release = asyncio.Event()
        self.running = 0
        self.peak = 0
        self.claims = {"step_claim_batch": 0, "step_finish_claim": 0}
        for method in self.claims:
            real = getattr(store, method)
            setattr(store, method, self._counted(method, real))

    def _counted(self, method: str, real: Any) -> Any:
        async def counted(*args: Any) -> Any:
            self.claims[method] += 1
            return await real(*args)

        return counted

    async def echo(self, args: dict[str, Any], context: StepContext) -> None:
        self.started.append(context.step_id)
        self.running += 1
        self.peak = max(self.peak, self.running)
        await (self.release.wait() if args.get("hold") else asyncio.sleep(0))
        self.running -= 1


@pytest.fixture
def recorder(store: MemoryStore) -> Recorder:
    return Recorder(store)


@pytest.fixture(autouse=True)
def short_and_patient(monkeypatch: pytest.MonkeyPatch) -> None:
    """The line ahead holds its LINE_CAPACITIES capacities however slow a loaded machine
    makes the no-op handlers (the room shrinks once they average 2.5 ms), and its steps
    wait as long as a test needs: the counts below do not depend on timing."""
    monkeypatch.setattr(claims_ahead, "PREFETCH_BELOW_S", 60.0)
    monkeypatch.setattr(claims_ahead, "GIVE_BACK_MIN_S", 60.0)


@pytest.fixture
async def loop(store: MemoryStore, state: PodState, recorder: Recorder) -> Any:
    """A claim loop (not started: the test drives it) whose outcomes claim, as a pod's do."""
    claim_loop: ClaimLoop | None = None

    def finish(outcomes: Any) -> Any:
        assert claim_loop is not None
        return claim_loop.finish_and_claim(outcomes)

    woken: list[int] = []
    executor = StepExecutor(
        store,
        registry(echo=recorder.echo),
        state,
        RetryPolicy(0.0, 0.0),
        on_slot_free=lambda: woken.append(1),
        prefetch=True,  # as a pod runs them: outcome writes claim ahead too
        finish=finish,
    )
    claim_loop = ClaimLoop(store, state, executor, ["echo"], poll_interval=60, outcomes_claim=True)
    claim_loop.slot_wakes = woken  # type: ignore[attr-defined]
    yield claim_loop
    await executor.wait_all(5)


def all_finished(store: MemoryStore, step_ids: list[str]) -> bool:
    return all(store.steps[s].status == "completed" for s in step_ids)


async def test_outcome_writes_drain_the_queue_at_capacity_in_priority_order(
    store: MemoryStore, state: PodState, loop: ClaimLoop, recorder: Recorder
) -> None:
    # Capacity 4: the first claim takes the best 4, each outcome write the next best (up to
    # LINE_CAPACITIES capacities more ahead of the slots).
    steps = [await submit(store, priority=i % 3) for i in range(60)]
    await loop.run_once()
    await until(lambda: all_finished(store, steps), description="the drain")

    assert recorder.peak <= state.max_capacity
    assert recorder.claims["step_claim_batch"] == 1
    assert recorder.claims["step_finish_claim"] >= 3
    # Each claim took the best pending steps: starts never go up in priority past what the
    # pod already held (its slots and the line ahead of them).
    held = (1 + claims_ahead.LINE_CAPACITIES) * state.max_capacity
    priorities = [store.steps[s].priority for s in recorder.started]
    for index, priority in enumerate(priorities):
        later = priorities[index + held :]
        assert all(p <= priority for p in later), priorities
    assert all(store.steps[s].retry_count == 0 for s in steps)
    assert loop.slot_wakes == []  # type: ignore[attr-defined]


async def test_the_claim_loop_is_woken_only_when_an_outcome_write_leaves_slots_empty(
    store: MemoryStore,
    state: PodState,
    loop: ClaimLoop,
    recorder: Recorder,
) -> None:
    quick = [await submit(store, priority=1) for _ in range(4)]
    # As many as their outcome write may claim: the 4 slots the quick steps free, and
    # LINE_CAPACITIES capacities ahead of them.
    room = (1 + claims_ahead.LINE_CAPACITIES) * state.max_capacity
    held = [await submit(store, args={"hold": True}) for _ in range(room)]
    await loop.run_once()
    await until(lambda: len(recorder.started) == 8, description="starts")
    # The quick steps' outcome write filled their slots with held steps and the line ahead
    # of them: it took all it could.
    assert all_finished(store, quick)
    assert [store.steps[s].status for s in held].count("claimed") == room
    assert not loop._wake_event.is_set()
    recorder.release.set()
    await until(lambda: all_finished(store, held), description="the held steps' outcomes")
    # Nothing was left to claim: the loop must look when the next step is due.
    await until(loop._wake_event.is_set, description="the claim loop's wake")


async def test_an_outcome_write_whose_answer_was_lost_loses_nothing_and_spends_no_retry(
    store: MemoryStore, loop: ClaimLoop, recorder: Recorder
) -> None:
    steps = [await submit(store) for _ in range(8)]
    # The first write's outcomes and claim commit; its answer is lost.
    lose_next_answer(store, "step_finish_claim")
    await loop.run_once()
    first = steps[:4]  # the capacity, oldest first
    await until(lambda: all_finished(store, first), description="the retried outcomes")
    # What the lost answer claimed is held by nobody until the loop gives it back.
    await loop.run_once()
    await until(lambda: all_finished(store, steps), description="the drain")
    assert sorted(recorder.started) == sorted(steps)  # each ran once
    assert all(store.steps[s].retry_count == 0 for s in steps)


class HeldAnswer:
    """Wraps the store's `step_finish_claim`: the first call commits, then its answer is
    held until `release` is set (a write still under way, its claim already committed);
    every call's limit is recorded."""

    def __init__(self, store: MemoryStore) -> None:
        self.limits: list[int] = []
        self.release = asyncio.Event()
        self.held = asyncio.Event()
        self._real = store.step_finish_claim
        store.step_finish_claim = self._call  # type: ignore[method-assign]

    async def _call(self, outcomes: Any, pod_id: str, step_types: list[str], limit: int) -> Any:
        self.limits.append(limit)
        answer = await self._real(outcomes, pod_id, step_types, limit)
        if len(self.limits) == 1:
            self.held.set()
            await self.release.wait()
        return answer


async def test_a_second_outcome_write_goes_while_the_first_is_under_way_within_the_room_left(
    store: MemoryStore, state: PodState, loop: ClaimLoop, recorder: Recorder
) -> None:
    answers = HeldAnswer(store)
    quick = [await submit(store, priority=2) for _ in range(2)]
    held = [await submit(store, priority=1, args={"hold": True}) for _ in range(2)]
    rest = [await submit(store) for _ in range(60)]
    await loop.run_once()  # the 4 slots: 2 quick, 2 held
    await answers.held.wait()  # the quick ones' write claimed, its answer not back yet
    room = (1 + claims_ahead.LINE_CAPACITIES) * state.max_capacity
    assert answers.limits == [room - 2]  # the 2 held run in their slots

    recorder.release.set()  # the held ones end: their write goes beside the first
    await until(lambda: len(answers.limits) >= 2, description="the second write")
    assert answers.limits[1] == 2  # only what the first did not reserve, and so on
    assert all_finished(store, held)
    answers.release.set()
    await until(lambda: all_finished(store, quick + held + rest), description="the drain")
    assert recorder.peak <= state.max_capacity
    assert sorted(recorder.started) == sorted(quick + held + rest)  # each ran once


async def test_the_orphan_watch_waits_for_an_outcome_write_under_way(
    store: MemoryStore, loop: ClaimLoop, recorder: Recorder
) -> None:
    answers = HeldAnswer(store)
    steps = [await submit(store) for _ in range(12)]
    await loop.run_once()
    await answers.held.wait()  # the write's claim has committed, its steps not launched
    loop._claim_failed_at, loop._next_orphan_sweep = time.monotonic(), 0.0  # a lost answer
    sweep = asyncio.ensure_future(loop.run_once())
    for _ in range(10):
        await asyncio.sleep(0)
    assert not sweep.done()  # steps claimed and not launched yet are not orphans

    answers.release.set()
    await sweep
    await until(lambda: all_finished(store, steps), description="the drain")
    assert sorted(recorder.started) == sorted(steps)  # none was given back: each ran once
    assert all(store.steps[s].retry_count == 0 for s in steps)


@pytest.mark.parametrize(
    ("parallelism", "prefetch", "combined"),
    [(10, True, True), (10, False, False), (125, True, False)],
)
async def test_a_pod_claims_ahead_with_its_outcomes_only_when_set_and_at_a_small_capacity(
    parallelism: int, prefetch: bool, combined: bool
) -> None:
    settings = Settings(pod_id="pod-a", max_parallelism=parallelism, prefetch_claims=prefetch)
    pod = Pod(settings, MemoryStore(), registry(echo=lambda args, context: None))
    assert pod.executor._claims_with_outcomes is combined
    assert pod.claimer._outcomes_claim is combined
    assert pod.executor._ahead._enabled is combined
