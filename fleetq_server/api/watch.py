"""WatchStep: a step's states from the pod's watch hub, as status messages."""

import functools
from collections.abc import AsyncIterator

from fleetq.v1 import fleetq_pb2 as pb

from fleetq_server.api import messages
from fleetq_server.api.offload import off_loop
from fleetq_server.runtime.watch import StepWatchHub


async def step_statuses(hub: StepWatchHub, step_id: str) -> AsyncIterator[pb.GetStepStatusResponse]:
    """The step's current status, then one per change, ending after a terminal status.

    The stream's end at the call's deadline (or the client leaving) is grpc's: it cancels
    the call, and the hub forgets the watcher on the way out.
    """
    async for step in hub.watch(step_id):
        build = functools.partial(messages.step_status, step)
        yield await off_loop(build) if messages.is_large(step) else build()
