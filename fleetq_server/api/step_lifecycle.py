"""CancelStep and RetryStep: the store's answer, then the step as it now stands."""

from typing import Protocol

from fleetq.v1 import fleetq_pb2 as pb

from fleetq_server import metrics
from fleetq_server.api import messages
from fleetq_server.store.ports import LifecyclePort, SubmitPort


class LifecycleStore(LifecyclePort, SubmitPort, Protocol):
    """What the two RPCs need of the store."""


async def cancel_step(store: LifecycleStore, step_id: str) -> pb.CancelStepResponse:
    """Cancel (or request the cancel of) a step, and report it."""
    status = await store.step_cancel(step_id)
    metrics.CANCEL_REQUESTS.labels("requested" if status == "claimed" else "cancelled").inc()
    step = await store.step_get(step_id)
    return pb.CancelStepResponse(step=messages.step_status(step))


async def retry_step(store: LifecycleStore, step_id: str) -> pb.RetryStepResponse:
    """Put a failed or cancelled step back in the queue, and report it."""
    await store.step_retry(step_id)
    metrics.RETRY_REQUESTS.inc()
    step = await store.step_get(step_id)
    return pb.RetryStepResponse(step=messages.step_status(step))
