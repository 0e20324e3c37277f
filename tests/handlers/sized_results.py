"""A handler whose result is as large as its args ask:
``FLEETQ_HANDLERS=tests.handlers.sized_results``.

``sized_result`` returns a list of ``args["zeros"]`` zeros: JSON of 2 bytes a value that a
protobuf Struct spends about 11 bytes on, the shape that inflates a status answer most.
"""

from typing import Any

from fleetq_server.handlers import HandlerRegistry, StepContext


def sized_result(args: dict[str, Any], context: StepContext) -> list[int]:
    return [0] * int(args["zeros"])


def register(registry: HandlerRegistry) -> None:
    registry.add("sized_result", sized_result)
