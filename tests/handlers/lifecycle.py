"""Step handlers for the cancel and retry tests, loaded into real pods with FLEETQ_HANDLERS."""

import asyncio
import time
from typing import Any

from fleetq_server.handlers import HandlerRegistry, StepContext


async def parked(args: dict[str, Any], context: StepContext) -> None:
    """Holds its claim until it is cancelled."""
    await asyncio.Event().wait()


def polite(args: dict[str, Any], context: StepContext) -> str:
    """A blocking handler that returns as soon as its context says it was cancelled."""
    deadline = time.monotonic() + 60
    while not context.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    return "stopped early" if context.cancelled else "ran to the end"


async def brief(args: dict[str, Any], context: StepContext) -> str:
    """Completes after `args.seconds`: what a cancel races."""
    await asyncio.sleep(float(args.get("seconds", 0)))
    return "done"


async def broken(args: dict[str, Any], context: StepContext) -> None:
    """Fails every execution."""
    raise RuntimeError("fails on purpose")


def register(registry: HandlerRegistry) -> None:
    """Add the lifecycle test types."""
    registry.add("lifecycle_parked", parked)
    registry.add("lifecycle_polite", polite)
    registry.add("lifecycle_brief", brief)
    registry.add("lifecycle_broken", broken)
