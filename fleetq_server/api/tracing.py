"""The server span of every FleetQ RPC, over gRPC and REST alike (only when tracing is on:
otherwise this interceptor is not installed and costs nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import grpc

from fleetq_server.api.interceptors import Behavior, StreamBehavior, UnaryInterceptor
from fleetq_server.gateway import GatewayServicerContext

if TYPE_CHECKING:
    from fleetq_server.telemetry.tracing import Tracing


def _code(context: Any, default: grpc.StatusCode) -> grpc.StatusCode:
    code: grpc.StatusCode | None = context.code()
    return code or default


@contextmanager
def _rpc_span(tracing: Tracing, method: str, context: Any) -> Iterator[None]:
    """The call's span, current while it runs, ended with the call's final status."""
    transport = "http" if isinstance(context, GatewayServicerContext) else "grpc"
    metadata = context.invocation_metadata() or ()
    with tracing.server_span(method, metadata, transport) as span:
        try:
            yield
        except (asyncio.CancelledError, GeneratorExit):  # the caller went away
            tracing.end_rpc(span, grpc.StatusCode.CANCELLED)
            raise
        except BaseException:  # an abort has set the code; anything else is UNKNOWN
            tracing.end_rpc(span, _code(context, grpc.StatusCode.UNKNOWN), context.details())
            raise
        tracing.end_rpc(span, _code(context, grpc.StatusCode.OK))


class TracingInterceptor(UnaryInterceptor):
    """Outermost: the span covers auth and error translation, and sees the final code."""

    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing

    def wrap(self, method: str, inner: Behavior) -> Behavior:
        tracing = self._tracing

        async def traced(request: Any, context: Any) -> Any:
            with _rpc_span(tracing, method, context):
                return await inner(request, context)

        return traced

    def wrap_stream(self, method: str, inner: StreamBehavior) -> StreamBehavior:
        tracing = self._tracing

        async def traced(request: Any, context: Any) -> AsyncIterator[Any]:
            with _rpc_span(tracing, method, context):
                async for response in inner(request, context):
                    yield response

        return traced
