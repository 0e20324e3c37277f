"""The store contract for tracing: a submit's traceparent is kept with its step."""

from dataclasses import replace

from fleetq_server.store.records import InsertOutcome
from fleetq_server.submission import SubmitRequest, prepare_step
from tests.contract.conftest import Backend

REQUEST = SubmitRequest(
    type="hello_world", args={}, metadata=None, priority=0, max_retries=3, idempotency_key=None
)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_a_steps_traceparent_is_read_back_and_none_when_not_given(backend: Backend) -> None:
    traced = replace(prepare_step(REQUEST), traceparent=TRACEPARENT)
    untraced = prepare_step(REQUEST)
    outcomes = await backend.store.step_insert_many([traced, untraced])
    assert all(isinstance(outcome, InsertOutcome) for outcome in outcomes)

    assert await backend.store.step_traceparent(traced.step_id) == TRACEPARENT
    assert await backend.store.step_traceparent(untraced.step_id) is None
    assert await backend.store.step_traceparent("step_20240101120000_00000000") is None
