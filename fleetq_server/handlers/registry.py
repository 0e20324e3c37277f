"""The step-handler registry, and loading user handler modules.

A handler module exposes `register(registry)`, which calls `registry.add(...)` for each
step type it serves. Explicit registration (rather than import side effects on a global)
keeps several registries independent, e.g. in tests.
"""

import importlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# A handler takes (args, context) and returns any JSON value; async or plain.
Handler = Callable[[dict[str, Any], "StepContext"], Awaitable[Any] | Any]


class HandlerLoadError(Exception):
    """A handler module could not be imported or registered; start-up stops."""


class CancelRequest:
    """Whether a step's cancel was requested: made once on the event loop, read from the
    handler's thread (one attribute, which the GIL reads whole). A threading.Event per
    step (a Condition and two locks) was 4% of a capacity-8 drain pod's samples."""

    __slots__ = ("made",)

    def __init__(self) -> None:
        self.made = False


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a handler knows about the execution it is part of."""

    step_id: str
    step_type: str
    idempotency_key: str
    attempt: int
    retry_count: int
    max_retries: int
    metadata: dict[str, Any]
    logger: logging.LoggerAdapter[logging.Logger]
    # Set when CancelStep asks this execution to stop (see `cancelled`).
    cancel_request: CancelRequest = field(default_factory=CancelRequest)

    @property
    def cancelled(self) -> bool:
        """True once the step's cancel was requested. An async handler is cancelled
        outright; a blocking one (in a thread) should check this and return early."""
        return self.cancel_request.made


@dataclass(frozen=True, slots=True)
class RegisteredHandler:
    """A handler with its options. Plain functions run in a thread, off the event loop."""

    step_type: str
    function: Handler
    timeout_s: float | None
    is_async: bool


class HandlerRegistry:
    """Step type -> handler. A pod claims only the types registered here."""

    def __init__(self) -> None:
        self._handlers: dict[str, RegisteredHandler] = {}

    def add(self, step_type: str, function: Handler, *, timeout: float | None = None) -> None:
        """Register `function` for `step_type`; `timeout` seconds counts as a failure."""
        if step_type in self._handlers:
            raise HandlerLoadError(f"step type {step_type!r} is registered twice")
        if timeout is not None and not timeout > 0:
            raise HandlerLoadError(f"timeout for {step_type!r} must be above zero")
        self._handlers[step_type] = RegisteredHandler(
            step_type=step_type,
            function=function,
            timeout_s=timeout,
            is_async=inspect.iscoroutinefunction(function),
        )

    def get(self, step_type: str) -> RegisteredHandler | None:
        """The handler for `step_type`, if this pod has one."""
        return self._handlers.get(step_type)

    @property
    def step_types(self) -> list[str]:
        """Every type this pod can run, sorted."""
        return sorted(self._handlers)


# The demo step types' module: loaded with FLEETQ_DEMO_HANDLERS, or when named in
# FLEETQ_HANDLERS like any other module.
BUILTIN_MODULE = "fleetq_server.handlers.builtin"


def load_registry(module_names: Iterable[str], *, demo_handlers: bool = False) -> HandlerRegistry:
    """A registry with each named module's handlers, plus the demo ones if asked for."""
    names = list(module_names)
    if demo_handlers and BUILTIN_MODULE not in names:
        names.insert(0, BUILTIN_MODULE)
    registry = HandlerRegistry()
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            raise HandlerLoadError(f"cannot import handler module {name!r}: {exc}") from exc
        register = getattr(module, "register", None)
        if not callable(register):
            raise HandlerLoadError(f"handler module {name!r} has no register(registry) function")
        try:
            register(registry)
        except HandlerLoadError:
            raise
        except Exception as exc:
            # E.g. a missing setting the module reads: one clear line, not a traceback.
            raise HandlerLoadError(
                f"handler module {name!r} failed to register: {type(exc).__name__}: {exc}"
            ) from exc
    return registry
