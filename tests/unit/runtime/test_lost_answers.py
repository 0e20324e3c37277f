"""Claims and outcomes whose answer was lost on the in-memory store: an orphaned claim is
given back by its own pod's claimer (not the steps it runs), and a retried outcome write
knows its first write from a lost claim."""

import asyncio
import logging
from typing import Any

import pytest

from fleetq_server import errors
from fleetq_server.handlers import StepContext
from fleetq_server.runtime import claimer
from fleetq_server.runtime.claimer import ClaimLoop
from fleetq_server.runtime.completer import OutcomeCompleter
from fleetq_server.runtime.executor import StepExecutor
from fleetq_server.runtime.retry_policy import RetryPolicy
from fleetq_server.runtime.state import PodState
from fleetq_server.store.records import StepOutcome
from tests.support.memory_store import MemoryStore
from tests.unit.runtime.helpers import claim_one, lose_claim, lose_next_answer, registry, submit

NO_BACKOFF = RetryPolicy(base_s=0.0, max_s=0.0)
STEP_LOG = logging.LoggerAdapter(logging.getLogger(__name__))


@pytest.fixture
async def loop(store: MemoryStore, state: PodState) -> Any:
    """A claim loop whose handlers block until the test ends."""
    release = asyncio.Event()

    async def blocked(args: dict[str, Any], context: StepContext) -> None:
        await release.wait()

    executor = StepExecutor(
        store, registry(echo=blocked), state, NO_BACKOFF, on_slot_free=lambda: None
    )
    yield ClaimLoop(store, state, executor, ["echo"], poll_interval=60)
    release.set()
    await executor.wait_all(5)


def running(loop: ClaimLoop) -> dict[str, int]:
    """Step id -> attempt of what the loop's executor runs."""
    return {r.step.step_id: r.step.attempt for r in loop._executor.running}


async def test_a_claim_whose_answer_was_lost_is_released_then_claimed_again(
    store: MemoryStore, loop: ClaimLoop
) -> None:
    first = await submit(store, priority=9)
    await loop.run_once()
    orphan = await submit(store)
    lose_next_answer(store, "step_claim_batch")
    with pytest.raises(errors.DatabaseUnavailableError):
        await loop.run_once()
    assert (await store.step_get(orphan)).claimed_by == "pod-a"
    assert running(loop) == {first: 1}, "claimed by this pod, run by nobody"

    await loop.run_once()

    # Released without a retry spent, and claimed again at once; the running one untouched.
    assert running(loop) == {first: 1, orphan: 2}
    step = await store.step_get(orphan)
    assert (step.status, step.claimed_by, step.retry_count) == ("claimed", "pod-a", 0)


async def test_a_claim_committed_after_the_first_look_is_found_by_a_later_one(
    store: MemoryStore, loop: ClaimLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(claimer, "ORPHAN_SWEEP_INTERVAL_S", 0.0)
    lose_next_answer(store, "step_claim_batch")
    with pytest.raises(errors.DatabaseUnavailableError):
        await loop.run_once()
    await loop.run_once()  # the first look: nothing was committed yet
    # The lost statement commits only now (the server was still running it).
    late = await claim_one(store)
    await loop.run_once()
    assert running(loop) == {late.step_id: late.attempt + 1}


async def test_the_claimer_stops_looking_once_the_watch_is_over(
    store: MemoryStore, loop: ClaimLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(claimer, "ORPHAN_WATCH_S", 0.0)
    monkeypatch.setattr(claimer, "ORPHAN_SWEEP_INTERVAL_S", 0.0)
    lose_next_answer(store, "step_claim_batch")
    with pytest.raises(errors.DatabaseUnavailableError):
        await loop.run_once()
    await loop.run_once()
    # No statement of ours can commit this late: a step held now is someone's business
    # (this pod's remote claims, say), not an orphan.
    held = await claim_one(store)
    await loop.run_once()
    assert running(loop) == {}
    assert (await store.step_get(held.step_id)).status == "claimed"


@pytest.mark.parametrize(
    ("max_retries", "error", "status"),
    [
        (1, None, "completed"),
        (1, {"type": "E", "message": "x"}, "pending"),
        (0, {"type": "E", "message": "x"}, "failed"),
    ],
)
async def test_an_outcome_whose_answer_was_lost_is_reported_as_recorded(
    store: MemoryStore, max_retries: int, error: dict[str, str] | None, status: str
) -> None:
    step = await claim_one(store, max_retries=max_retries)
    lose_next_answer(store, "step_finish_many")
    outcome = StepOutcome(step, "pod-a", result_json="1" if error is None else None, error=error)
    assert await OutcomeCompleter(store, NO_BACKOFF).complete(outcome, STEP_LOG) == status
    record = await store.step_get(step.step_id)
    assert (record.status, record.attempt) == (status, step.attempt)


async def test_an_unanswered_outcome_of_a_claim_taken_away_meanwhile_is_fenced_out(
    store: MemoryStore,
) -> None:
    step = await claim_one(store)

    async def taken_away() -> None:
        await store.step_release([step], "pod-a")
        await store.pod_register("pod-b", 4)
        await store.step_claim_batch("pod-b", ["echo"], 1)

    lose_next_answer(store, "step_finish_many", before=taken_away)
    outcome = StepOutcome(step, "pod-a", result_json="1")
    assert await OutcomeCompleter(store, NO_BACKOFF).complete(outcome, STEP_LOG) is None
    assert (await store.step_get(step.step_id)).claimed_by == "pod-b"


async def test_a_lost_claim_made_again_and_left_unrecorded_is_given_back_and_run(
    store: MemoryStore, loop: ClaimLoop
) -> None:
    await submit(store)
    await loop.run_once()
    [(step_id, attempt)] = running(loop).items()
    lose_claim(store, step_id)  # a crash lost the claim before its WAL flush
    await loop.run_once()  # claimed again under the token that runs here: not launched
    assert running(loop) == {step_id: attempt}
    # The execution ends without an outcome of its own for the new claim (as when its
    # write was fenced out just before the claim was made again).
    await loop._executor.cancel_all()

    await loop.run_once()

    assert running(loop) == {step_id: attempt + 1}
    step = await store.step_get(step_id)
    assert (step.status, step.claimed_by, step.retry_count) == ("claimed", "pod-a", 0)
