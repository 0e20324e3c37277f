"""Built-in step types: `hello_world` and `sleep`."""

import asyncio
from typing import Any

from fleetq_server.handlers.registry import HandlerRegistry, StepContext

MAX_SLEEP_SECONDS = 3600.0


async def hello_world(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    """Greet `args.message` (default "world")."""
    message = args.get("message", "world")
    return {"greeting": f"Hello, {message}", "step_id": context.step_id}


async def sleep(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    """Sleep `args.seconds` (0..3600), e.g. to simulate work."""
    seconds = args.get("seconds", 1)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError("args.seconds must be a number")
    if not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise ValueError(f"args.seconds must be between 0 and {MAX_SLEEP_SECONDS:g}")
    await asyncio.sleep(seconds)
    return {"slept_seconds": seconds}


def register(registry: HandlerRegistry) -> None:
    """Add the built-in handlers."""
    registry.add("hello_world", hello_world)
    registry.add("sleep", sleep)
