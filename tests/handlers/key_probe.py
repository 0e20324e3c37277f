"""A handler that reports the idempotency key of every execution:
``FLEETQ_HANDLERS=tests.handlers.key_probe``.

``fail_once`` appends the key it was given to the file named by ``args["record_to"]``, fails
its first execution and succeeds on the retry, so a test can compare the keys two executions
of one step received.
"""

from pathlib import Path
from typing import Any

from fleetq_server.handlers import HandlerRegistry, StepContext


def fail_once(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    with Path(args["record_to"]).open("a") as record:
        record.write(context.idempotency_key + "\n")
    if context.retry_count == 0:
        raise RuntimeError("failing the first execution on purpose")
    return {"retry_count": context.retry_count}


def register(registry: HandlerRegistry) -> None:
    registry.add("fail_once", fail_once)
