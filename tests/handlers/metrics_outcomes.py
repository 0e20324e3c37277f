"""Step handlers for the metrics tests, loaded into real pods with FLEETQ_HANDLERS.

Each type has a fixed fate, so a test knows exactly which counters its steps must move.
"""

import asyncio
from typing import Any

from fleetq_server.handlers import HandlerRegistry, StepContext


async def fails_first_attempt(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    """Fails the first execution, succeeds on the retry."""
    if context.retry_count == 0:
        raise RuntimeError("first attempt fails on purpose")
    return {"retry_count": context.retry_count}


async def always_fails(args: dict[str, Any], context: StepContext) -> None:
    """Fails every execution, until the retry budget is spent."""
    raise RuntimeError("fails on purpose")


async def runs_forever(args: dict[str, Any], context: StepContext) -> None:
    """Holds its claim until the pod dies (or is stopped)."""
    await asyncio.Event().wait()


def register(registry: HandlerRegistry) -> None:
    """Add the metrics test types."""
    registry.add("metrics_flaky", fails_first_attempt)
    registry.add("metrics_broken", always_fails)
    registry.add("metrics_stuck", runs_forever)
