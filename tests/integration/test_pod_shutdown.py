"""Pod.shutdown in process, against a real PostgreSQL, where timing must be controlled."""

import asyncio
from typing import Any

import pytest

from fleetq_server.config import Settings
from fleetq_server.handlers import load_registry
from fleetq_server.runtime.pod import Pod
from fleetq_server.store import Store
from fleetq_server.store.records import ClaimedStep
from fleetq_server.submission import prepare_step
from tests.integration.conftest import REQUEST

CLAIM_ANSWER_DELAY_S = 0.5


async def test_a_claim_in_flight_when_shutdown_begins_is_run_not_orphaned(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    pod = Pod(Settings(pod_id="pod-a"), store, load_registry([], demo_handlers=True))
    claim = store.step_claim_batch
    claim_committed = asyncio.Event()

    async def claim_answered_late(*args: Any) -> list[ClaimedStep]:
        """The claim commits, and its answer is still on the way when shutdown starts."""
        steps = await claim(*args)
        if steps:
            claim_committed.set()
            await asyncio.sleep(CLAIM_ANSWER_DELAY_S)
        return steps

    monkeypatch.setattr(store, "step_claim_batch", claim_answered_late)
    await pod.start()
    [inserted] = await store.step_insert_many([prepare_step(REQUEST)])
    step_id = inserted.step_id
    await asyncio.wait_for(claim_committed.wait(), timeout=10)
    await pod.shutdown(grace=5)
    step = await store.step_get(step_id)
    # Cancelling the claimer mid-claim left the step claimed by a pod now down: nobody
    # would run it until recovery requeued it, spending a retry (here: failing it).
    assert (step.status, step.retry_count) == ("completed", 0)
