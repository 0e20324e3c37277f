"""Step handlers the fault suite loads into its pods (``FLEETQ_HANDLERS``).

``hold`` keeps its claim for ``args.seconds``; ``gated`` keeps it until the file
``args.gate`` exists, so a test decides when it finishes (even while the database is down).
Both report the pod and the attempt that produced the result, so a test can tell which
execution's outcome the database kept.
"""

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from fleetq_server.handlers import HandlerRegistry, StepContext

HOLD_STEP_TYPE = "hold"
GATED_STEP_TYPE = "gated"
_GATE_POLL_S = 0.02


def _execution(context: StepContext) -> dict[str, Any]:
    return {"pod_id": os.environ["FLEETQ_POD_ID"], "attempt": context.attempt}


async def hold(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    """Sleep ``args.seconds``."""
    await asyncio.sleep(float(args["seconds"]))
    return _execution(context)


def gated(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    """Wait until the file ``args.gate`` exists (the test opens the gate). A plain
    function: the pod runs it in a thread, where polling the file blocks nothing. With
    ``args.runs``, each execution first appends a line to that file: a test counts them."""
    if "runs" in args:
        with Path(args["runs"]).open("a") as runs:
            runs.write(f"{context.step_id} {context.attempt}\n")
    gate = Path(args["gate"])
    while not gate.exists():
        time.sleep(_GATE_POLL_S)
    return _execution(context)


def register(registry: HandlerRegistry) -> None:
    """Add the fault suite's step types."""
    registry.add(HOLD_STEP_TYPE, hold)
    registry.add(GATED_STEP_TYPE, gated)
