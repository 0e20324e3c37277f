"""A handler module that registers a built-in step type a second time."""

from typing import Any

from fleetq_server.handlers import HandlerRegistry, StepContext


async def hello_world(args: dict[str, Any], context: StepContext) -> str:
    return "a second greeter"


def register(registry: HandlerRegistry) -> None:
    registry.add("hello_world", hello_world)
