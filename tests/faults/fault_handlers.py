"""Step handlers the fault suite loads into its pods (``FLEETQ_HANDLERS``).

``hold`` keeps its claim for ``args.seconds``, so a test can kill, freeze or disconnect a pod
while it runs steps. Its result names the pod and the attempt that produced it, so a test can
tell which execution's outcome the database kept.
"""

import asyncio
import os
from typing import Any

from fleetq_server.handlers import HandlerRegistry, StepContext

HOLD_STEP_TYPE = "hold"


async def hold(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    """Sleep ``args.seconds``, then report who ran this execution."""
    await asyncio.sleep(float(args["seconds"]))
    return {"pod_id": os.environ["FLEETQ_POD_ID"], "attempt": context.attempt}


def register(registry: HandlerRegistry) -> None:
    """Add the fault suite's step types."""
    registry.add(HOLD_STEP_TYPE, hold)
