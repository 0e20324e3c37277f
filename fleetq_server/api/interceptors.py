"""Interceptors: behaviour wrapped around every FleetQ method, once, at start-up.

They are applied to the handler objects themselves (`wrap_handlers`) rather than installed
as grpc.aio server interceptors: grpc.aio runs its interceptor chain in Python on every
call, which cost a fifth of single-submit throughput (h2load, 4,260 against 5,150 calls/s
with none). The REST gateway serves the same wrapped handlers, so both protocols run the
same chain.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import grpc

from fleetq_server.api.status_codes import status_code_for
from fleetq_server.errors import FleetQError

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # grpc's classes are generic only in the type stubs
    MethodHandler = grpc.RpcMethodHandler[Any, Any]

Behavior = Callable[[Any, Any], Awaitable[Any]]
# A server-streaming method's behaviour: an async generator function (grpc.aio tells the
# kinds of handler apart by that, so every wrapper must be one too).
StreamBehavior = Callable[[Any, Any], AsyncIterator[Any]]


class UnaryInterceptor(ABC):
    """Wraps the behaviour of unary methods, and of server-streaming ones if it can."""

    @abstractmethod
    def wrap(self, method: str, inner: Behavior) -> Behavior:
        """The behaviour to run instead of `inner` for calls of `method`."""

    def wrap_stream(self, method: str, inner: StreamBehavior) -> StreamBehavior:
        """The same for a server-streaming method; by default the stream is left as is
        (error translation, admin auth and request metrics override it)."""
        return inner


def wrap_handlers(
    handlers: Mapping[str, MethodHandler], interceptors: Sequence[UnaryInterceptor]
) -> dict[str, MethodHandler]:
    """`handlers` with each unary behaviour wrapped by `interceptors`, the first outermost."""
    wrapped = {}
    for method, handler in handlers.items():
        if handler.unary_stream is not None:
            # Ours are async generators; grpc's stubs only know synchronous streams.
            stream = cast(StreamBehavior, handler.unary_stream)
            for interceptor in reversed(interceptors):
                stream = interceptor.wrap_stream(method, stream)
            wrapped[method] = grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
            continue
        behavior: Behavior | None = handler.unary_unary
        if behavior is None:  # client streaming: none of ours is
            raise ValueError(f"{method} is neither unary nor server-streaming")
        for interceptor in reversed(interceptors):
            behavior = interceptor.wrap(method, behavior)
        wrapped[method] = grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return wrapped


class ErrorTranslationInterceptor(UnaryInterceptor):
    """Turns domain exceptions into gRPC statuses, once, for every unary method.

    Anything unexpected is logged here and reaches the client only as a generic
    INTERNAL: no stack trace or SQL leaves the process.
    """

    def wrap(self, method: str, inner: Behavior) -> Behavior:
        async def translated(request: Any, context: Any) -> Any:
            try:
                return await inner(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort_translated(exc, method, context)

        return translated

    def wrap_stream(self, method: str, inner: StreamBehavior) -> StreamBehavior:
        async def translated(request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for response in inner(request, context):
                    yield response
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort_translated(exc, method, context)

        return translated


async def _abort_translated(exc: Exception, method: str, context: Any) -> None:
    """End the call with `exc`'s gRPC code: ours from the table, anything else INTERNAL
    (logged here, never shown to the client)."""
    if isinstance(exc, FleetQError):
        await context.abort(status_code_for(exc), str(exc))
    log.exception("unexpected error in %s", method)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")
