"""Step handlers the benchmark pods load (FLEETQ_HANDLERS=benchmarks.handlers).

`bench_noop` does nothing, so a drain measures the queue alone. `bench_probe` returns the
wall-clock time its handler started; with the client's submit time in its args, the
latency scenario reads submit-to-start latency from the database afterwards.
"""

import time
from typing import Any

from fleetq_server.handlers import HandlerRegistry, StepContext

NOOP_TYPE = "bench_noop"
PROBE_TYPE = "bench_probe"


async def noop(args: dict[str, Any], context: StepContext) -> None:
    """Succeed at once."""


async def probe(args: dict[str, Any], context: StepContext) -> dict[str, float]:
    """Report when this handler started (time.time(), comparable with the client's)."""
    return {"started": time.time()}


def register(registry: HandlerRegistry) -> None:
    """Add the benchmark step types."""
    registry.add(NOOP_TYPE, noop)
    registry.add(PROBE_TYPE, probe)
