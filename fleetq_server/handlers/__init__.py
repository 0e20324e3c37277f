"""Step handlers: the registry, the context handlers receive, and the built-ins."""

from fleetq_server.handlers.outcomes import PermanentFailure, RetryAfter
from fleetq_server.handlers.registry import (
    Handler,
    HandlerLoadError,
    HandlerRegistry,
    StepContext,
    load_registry,
)

__all__ = [
    "Handler",
    "HandlerLoadError",
    "HandlerRegistry",
    "PermanentFailure",
    "RetryAfter",
    "StepContext",
    "load_registry",
]
