"""``block_loop``: a handler that holds its pod's event loop (``time.sleep`` inside a
coroutine) for ``args.seconds`` on its first attempt, as a stuck pod would; later attempts
return at once. Load it with ``FLEETQ_HANDLERS=tests.hostile.loop_blocker``."""

import os
import time
from typing import Any

from fleetq_server.handlers import HandlerRegistry, StepContext

BLOCK_LOOP_TYPE = "block_loop"


async def block_loop(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    if context.attempt == 1:
        time.sleep(float(args["seconds"]))  # noqa: ASYNC251 - the stuck loop under test
    return {"pod_id": os.environ["FLEETQ_POD_ID"], "attempt": context.attempt}


def register(registry: HandlerRegistry) -> None:
    registry.add(BLOCK_LOOP_TYPE, block_loop)
