"""The HTTP/JSON transcoding gateway: a plain ASGI app in front of in-process gRPC handlers.

Per request: route (from the service's http annotations), decode JSON into the request
message, call the same RpcMethodHandler the gRPC server uses (interceptors are wrapped
around it once, see `fleetq_server.api.interceptors`), and encode the reply as
grpc-gateway would. gRPC status codes
decide every error's HTTP status through `http_errors`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias, TypeVar

import grpc
import grpc.aio
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from fleetq_server.gateway.asgi import ASGIApp, Receive, Scope, Send
from fleetq_server.gateway.connection_io import ByteBudget, Disconnected, unless_disconnected
from fleetq_server.gateway.context import (
    GatewayServicerContext,
    InvalidHeaderError,
    metadata_from_headers,
    peer_from_client,
)
from fleetq_server.gateway.http_errors import (
    METHOD_NOT_ALLOWED,
    UNSUPPORTED_MEDIA_TYPE,
    HttpError,
    error_body,
    http_error_for,
)
from fleetq_server.gateway.invocation import (
    INTERNAL_DETAIL,
    CallFailure,
    call_behaviour,
    check_response,
    failure_from,
    status_failure,
)
from fleetq_server.gateway.json_parse import DecodeError
from fleetq_server.gateway.media_types import json_body_refusal
from fleetq_server.gateway.path_templates import PathValueError
from fleetq_server.gateway.response_encoding import dumps, encode_message
from fleetq_server.gateway.routes import (
    MethodNotAllowed,
    Route,
    RouteError,
    Router,
    routes_for_service,
)
from fleetq_server.gateway.streaming import Stream, open_stream, send_stream

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")
_NO_MOUNTS: Mapping[str, ASGIApp] = MappingProxyType({})
# The scope key under which the gateway records what a request matched, for middleware
# around it (request metrics label by it): the route's path template, or a mount's path.
# Absent when nothing matched.
ROUTE_TEMPLATE_KEY = "route_template"
# Bodies and responses above this many bytes are decoded and encoded on the executor, off
# the event loop: a few thousand JSON values at most stay on it, a millisecond or so.
OFFLOAD_BYTES = 4096
# On answers given without reading the whole body: HTTP/1.1 cannot tell where the unread
# rest of it ends, so the connection cannot carry another request.
_CLOSE = ((b"connection", b"close"),)

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


class Gateway:
    """ASGI app serving a gRPC service's annotated methods as REST routes."""

    def __init__(
        self,
        service: ServiceDescriptor,
        handlers: Mapping[str, Handler],
        mounts: Mapping[str, ASGIApp] = _NO_MOUNTS,
        max_body_bytes: int = 1 << 20,
        max_json_values: int | None = None,
        executor: Executor | None = None,
        max_body_bytes_in_flight: int | None = None,
        strict_headers: Collection[str] = (),
    ) -> None:
        """Build the routes; raise RouteError for rules or handlers that cannot be served.

        `handlers` is keyed by full method name (`/fleetq.v1.FleetQService/SubmitStep`);
        every routed method needs one. `mounts` maps exact paths (e.g. `/metrics`) to other
        ASGI apps, consulted before the routes. `max_json_values` refuses bodies holding
        more JSON values, counted before parsing. Bodies and responses over OFFLOAD_BYTES
        are decoded and encoded on `executor` (None: asyncio's default one). With
        `max_body_bytes_in_flight`, requests wait, unread, while the bodies of others
        would take more than that many bytes. `strict_headers` (lowercase names) are
        headers the service reads: a value gRPC metadata cannot carry gets a 400 naming
        the header instead of being dropped.
        """
        self._router = Router(routes_for_service(service))
        missing = sorted({r.full_method for r in self._router.routes} - set(handlers))
        if missing:
            raise RouteError(f"no handler for routed methods: {', '.join(missing)}")
        self._handlers = dict(handlers)
        self._mounts = dict(mounts)
        self._max_body_bytes = max_body_bytes
        self._max_json_values = max_json_values
        self._executor = executor
        self._bodies = (
            ByteBudget(max_body_bytes_in_flight) if max_body_bytes_in_flight is not None else None
        )
        self._strict_headers = frozenset(strict_headers)

    @property
    def routes(self) -> Sequence[Route]:
        """The routes served, most specific first."""
        return self._router.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})
            return
        if kind != "http":
            return
        mount = self._mounts.get(scope["path"])
        if mount is not None:
            scope[ROUTE_TEMPLATE_KEY] = scope["path"]
            await mount(scope, receive, send)
            return
        try:
            response = await self._respond(scope, receive)
            if isinstance(response, Stream):
                head = scope["method"] == "HEAD"
                sending = send_stream(response, send, scope["path"], head=head)
                await unless_disconnected(sending, receive)
                return
        except Disconnected:
            return
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(response.body)).encode()),
                    *response.headers,
                ],
            }
        )
        # A HEAD answer carries the GET answer's headers, Content-Length included, only.
        body = b"" if scope["method"] == "HEAD" else response.body
        await send({"type": "http.response.body", "body": body})

    async def _respond(self, scope: Scope, receive: Receive) -> _Response | Stream:
        path: str = scope["path"]
        try:
            return await self._call(scope, receive)
        except CallFailure as failure:
            error = http_error_for(failure.code)
            return _error_response(error, failure.detail, path, failure.headers)
        except Disconnected:
            raise
        except Exception:  # a gateway bug: still answer in the contract's shape
            _LOGGER.exception("gateway failed on %s %s", scope.get("method"), path)
            return _error_response(http_error_for(grpc.StatusCode.INTERNAL), INTERNAL_DETAIL, path)

    async def _call(self, scope: Scope, receive: Receive) -> _Response | Stream:
        path: str = scope["path"]
        raw_path = scope.get("raw_path") or path.encode("utf-8")
        try:
            resolved = self._router.resolve(scope["method"], raw_path.split(b"?", 1)[0])
        except PathValueError as error:
            raise CallFailure(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        if resolved is None:
            raise CallFailure(grpc.StatusCode.NOT_FOUND, f"no route for {scope['method']} {path}")
        if isinstance(resolved, MethodNotAllowed):
            scope[ROUTE_TEMPLATE_KEY] = resolved.template
            allowed = ", ".join(resolved.allowed)
            detail = f"method {scope['method']} is not allowed on {path}; allowed: {allowed}"
            return _error_response(
                METHOD_NOT_ALLOWED, detail, path, ((b"allow", allowed.encode()),)
            )
        route = resolved.route
        scope[ROUTE_TEMPLATE_KEY] = route.template.template
        if route.decoder.has_body:
            refusal = json_body_refusal(scope.get("headers", ()))
            if refusal is not None:
                return _error_response(UNSUPPORTED_MEDIA_TYPE, refusal, path, _CLOSE)
        if not route.decoder.has_body or self._bodies is None:
            return await self._handle(scope, receive, route, resolved.path_vars)
        declared = self._declared_length(scope)
        reserved = self._max_body_bytes if declared is None else min(declared, self._max_body_bytes)
        await self._bodies.acquire(reserved)
        try:  # held until answered: the decoded request lives as long as its handler
            return await self._handle(scope, receive, route, resolved.path_vars)
        finally:
            self._bodies.release(reserved)

    async def _handle(
        self, scope: Scope, receive: Receive, route: Route, path_vars: Mapping[str, str]
    ) -> _Response | Stream:
        body = await self._read_body(scope, receive) if route.decoder.has_body else b""
        decode = functools.partial(
            self._decode, route, body, path_vars, scope.get("query_string", b"")
        )
        request = await self._off_loop(decode) if len(body) > OFFLOAD_BYTES else decode()
        try:
            metadata = metadata_from_headers(scope.get("headers", ()), self._strict_headers)
        except InvalidHeaderError as error:
            raise CallFailure(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        context = GatewayServicerContext(
            invocation_metadata=metadata, peer=peer_from_client(scope.get("client"))
        )
        if route.method.server_streaming:
            try:  # the context lives as long as the stream: send_stream finishes it
                opening = self._open_stream(route, request, context)
                return await unless_disconnected(opening, receive)
            except BaseException:
                context.finish()
                raise
        try:
            response = await unless_disconnected(self._invoke(route, request, context), receive)
        finally:
            context.finish()
        return _Response(status=_success_status(context, route), body=response)

    def _decode(
        self, route: Route, body: bytes, path_vars: Mapping[str, str], query_string: bytes
    ) -> Message:
        """The request message; the value count is checked before any parsing."""
        try:
            return route.decoder.decode(body, path_vars, query_string, self._max_json_values)
        except DecodeError as error:
            raise CallFailure(grpc.StatusCode.INVALID_ARGUMENT, error.detail) from None

    async def _off_loop(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    @staticmethod
    def _declared_length(scope: Scope) -> int | None:
        for name, value in scope.get("headers", ()):
            if name.lower() == b"content-length" and value.strip().isdigit():
                return int(value)
        return None

    async def _invoke(
        self, route: Route, request: Message, context: GatewayServicerContext
    ) -> bytes:
        """Handler and encoding; everything unexpected becomes a generic 500."""
        handler = self._handlers[route.full_method]  # every route has one (checked at init)
        if handler.unary_unary is None:
            raise CallFailure(
                grpc.StatusCode.UNIMPLEMENTED, f"method {route.full_method} is not implemented"
            )
        try:
            response = await call_behaviour(handler.unary_unary, request, context)
        except Exception as error:
            raise failure_from(error, context, route.full_method) from None
        failure = status_failure(context)
        if failure is not None:
            raise failure
        response = check_response(response, route.method.output_type.full_name, route.full_method)
        try:
            if response.ByteSize() > OFFLOAD_BYTES:
                return await self._off_loop(lambda: dumps(encode_message(response)))
            return dumps(encode_message(response))
        except Exception:
            _LOGGER.exception("cannot encode the response of %s", route.full_method)
            raise CallFailure(grpc.StatusCode.INTERNAL, INTERNAL_DETAIL) from None

    async def _open_stream(
        self, route: Route, request: Message, context: GatewayServicerContext
    ) -> Stream:
        """A server-streaming handler's stream, opened up to its first message."""
        handler = self._handlers[route.full_method]
        if handler.unary_stream is None:
            raise CallFailure(
                grpc.StatusCode.UNIMPLEMENTED, f"method {route.full_method} is not implemented"
            )
        behaviour: Callable[..., Any] = handler.unary_stream
        try:
            messages = behaviour(request, context)
        except Exception as error:
            raise failure_from(error, context, route.full_method) from None
        expected = route.method.output_type.full_name
        return await open_stream(messages, context, route.full_method, expected)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body, refusing (without reading on) anything over max_body_bytes."""
        too_large = CallFailure(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"request body exceeds {self._max_body_bytes} bytes",
            _CLOSE,
        )
        for name, value in scope.get("headers", ()):
            is_length = name.lower() == b"content-length" and value.strip().isdigit()
            if is_length and int(value) > self._max_body_bytes:
                raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Disconnected
            if message["type"] != "http.request":
                continue
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body_bytes:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _success_status(context: GatewayServicerContext, route: Route) -> int:
    """200, or what the servicer asked for with `x-http-code` response metadata."""
    raw = context.http_status_override()
    if raw is None:
        return 200
    text = raw.strip()
    if text.isdigit() and 100 <= int(text) <= 599:
        return int(text)
    _LOGGER.warning("%s set an invalid x-http-code %r; answering 200", route.full_method, raw)
    return 200


def _error_response(
    error: HttpError,
    detail: str,
    path: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> _Response:
    body = dumps(error_body(detail, error.error_type, path))
    if error.status == 401:  # RFC 9110: a 401 names the scheme the client should use
        headers = (*headers, (b"www-authenticate", b"Bearer"))
    return _Response(status=error.status, body=body, headers=headers)


async def _lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown; the gateway itself holds no resources."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
