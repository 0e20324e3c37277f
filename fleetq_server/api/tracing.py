"""The server span of every FleetQ RPC, over gRPC and REST alike (only when tracing is on:
otherwise this interceptor is not installed and costs nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from fleetq_server.api.interceptors import Behavior, StreamBehavior, UnaryInterceptor
from fleetq_server.gateway import GatewayServicerContext

if TYPE_CHECKING:
    from fleetq_server.telemetry.tracing import Tracing


def _transport(context: Any) -> str:
    return "http" if isinstance(context, GatewayServicerContext) else "grpc"


def _code(context: Any, default: grpc.StatusCode) -> grpc.StatusCode:
    code: grpc.StatusCode | None = context.code()
    return code or default


class TracingInterceptor(UnaryInterceptor):
    """Outermost: the span covers auth and error translation, and sees the final code."""

    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing

    def wrap(self, method: str, inner: Behavior) -> Behavior:
        tracing = self._tracing

        async def traced(request: Any, context: Any) -> Any:
            metadata = context.invocation_metadata() or ()
            with tracing.server_span(method, metadata, _transport(context)) as span:
                try:
                    response = await inner(request, context)
                except asyncio.CancelledError:
                    tracing.end_rpc(span, grpc.StatusCode.CANCELLED)
                    raise
                except BaseException:
                    tracing.end_rpc(
                        span, _code(context, grpc.StatusCode.UNKNOWN), context.details()
                    )
                    raise
                tracing.end_rpc(span, _code(context, grpc.StatusCode.OK))
                return response

        return traced

    def wrap_stream(self, method: str, inner: StreamBehavior) -> StreamBehavior:
        tracing = self._tracing

        async def traced(request: Any, context: Any) -> AsyncIterator[Any]:
            metadata = context.invocation_metadata() or ()
            with tracing.server_span(method, metadata, _transport(context)) as span:
                try:
                    async for response in inner(request, context):
                        yield response
                except asyncio.CancelledError:
                    tracing.end_rpc(span, grpc.StatusCode.CANCELLED)
                    raise
                except BaseException:
                    tracing.end_rpc(
                        span, _code(context, grpc.StatusCode.UNKNOWN), context.details()
                    )
                    raise
                tracing.end_rpc(span, _code(context, grpc.StatusCode.OK))

        return traced
