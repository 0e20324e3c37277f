"""Request metrics for both protocols: a gRPC interceptor and an ASGI middleware.

Each request is counted once, by the protocol it arrived over: the interceptor wraps the
gRPC server's handlers only (not the gateway's), so REST calls show up in `fleetq_http_*`
by route template and never in `fleetq_grpc_server_*`.
Label values are bounded: registered method names, route templates (never raw paths),
status codes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from fleetq_server import metrics
from fleetq_server.api.interceptors import Behavior, StreamBehavior, UnaryInterceptor
from fleetq_server.gateway import ROUTE_TEMPLATE_KEY
from fleetq_server.gateway.asgi import ASGIApp, Message, Receive, Scope, Send

# The route label of requests no route or mount matches.
UNMATCHED_ROUTE = "unmatched"
# HTTP methods labelled as themselves; any other (clients may invent them) is "other".
_KNOWN_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class GrpcMetricsInterceptor(UnaryInterceptor):
    """Counts and times unary RPCs by method and status code.

    Install it first (outermost) so it sees the code the error translation chose. It wraps
    FleetQ's own methods; the standard health and reflection services are not measured.
    """

    def wrap(self, method: str, inner: Behavior) -> Behavior:
        async def measured(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            try:
                response = await inner(request, context)
            except asyncio.CancelledError:
                _observe_rpc(method, grpc.StatusCode.CANCELLED, started)
                raise
            except BaseException:
                # An abort has set the code; anything else reaches the client as UNKNOWN.
                _observe_rpc(method, context.code() or grpc.StatusCode.UNKNOWN, started)
                raise
            # A servicer may set a non-OK code and still return (grpc health does).
            _observe_rpc(method, context.code() or grpc.StatusCode.OK, started)
            return response

        return measured

    def wrap_stream(self, method: str, inner: StreamBehavior) -> StreamBehavior:
        """A stream is counted once it ends, timed over its whole life."""

        async def measured(request: Any, context: Any) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                async for response in inner(request, context):
                    yield response
            except asyncio.CancelledError:
                _observe_rpc(method, grpc.StatusCode.CANCELLED, started)
                raise
            except BaseException:
                _observe_rpc(method, context.code() or grpc.StatusCode.UNKNOWN, started)
                raise
            _observe_rpc(method, context.code() or grpc.StatusCode.OK, started)

        return measured


def _observe_rpc(method: str, code: grpc.StatusCode, started: float) -> None:
    metrics.child(metrics.GRPC_REQUESTS, method, code.name).inc()
    metrics.child(metrics.GRPC_REQUEST_SECONDS, method).observe(time.perf_counter() - started)


class HttpMetricsMiddleware:
    """ASGI middleware counting and timing HTTP requests by method, route template and status.

    The route is what the gateway recorded in the scope (`ROUTE_TEMPLATE_KEY`: the route's
    template or a mount's path) once it matched the path, so no path is matched twice.
    Requests whose client left before any answer are not counted: they have no status.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _KNOWN_HTTP_METHODS else "other"
        started = time.perf_counter()
        status: int | None = None

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_recording_status)
        except BaseException:
            status = status or 500  # what the ASGI server answers for an app that raised
            raise
        finally:
            if status is not None:
                route = str(scope.get(ROUTE_TEMPLATE_KEY, UNMATCHED_ROUTE))
                metrics.child(metrics.HTTP_REQUESTS, method, route, str(status)).inc()
                elapsed = time.perf_counter() - started
                metrics.child(metrics.HTTP_REQUEST_SECONDS, method, route).observe(elapsed)
