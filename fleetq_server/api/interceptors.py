"""gRPC server interceptors. The REST gateway runs the same chain in process."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from fleetq_server.api.status_codes import status_code_for
from fleetq_server.errors import FleetQError

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # grpc's classes are generic only in the type stubs
    MethodHandler = grpc.RpcMethodHandler[Any, Any]
    Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[MethodHandler]]

Behavior = Callable[[Any, Any], Awaitable[Any]]


def with_behavior(handler: MethodHandler, behavior: Behavior) -> MethodHandler:
    """`handler` with its unary behaviour replaced: what every interceptor here returns."""
    return grpc.unary_unary_rpc_method_handler(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class UnaryInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Base of the interceptors that wrap every unary method's behaviour.

    Streaming methods (health Watch, reflection) and unknown methods pass through. The
    wrapped handler is cached per method: grpc.aio calls `intercept_service` on every
    call, and rebuilding the handler each time is wasted work on the hot path.
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[MethodHandler, MethodHandler]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> MethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = with_behavior(handler, self.wrap(method, handler.unary_unary))
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def wrap(self, method: str, inner: Behavior) -> Behavior:
        """The behaviour to run instead of `inner` for calls of `method`."""
        raise NotImplementedError


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
            except FleetQError as exc:
                await context.abort(status_code_for(exc), str(exc))
            except Exception:
                log.exception("unexpected error in %s", method)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")

        return translated
