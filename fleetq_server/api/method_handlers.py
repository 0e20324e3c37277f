"""Build a servicer's RpcMethodHandlers once, for the grpc.aio server and the gateway alike.

Sharing the very same handler objects is what guarantees that a REST call and a gRPC
call run the same code: the gateway calls `handler.unary_unary` in process, the server
calls it after deserialising with `request_deserializer`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Behavior: TypeAlias = Callable[[Any, Any], Awaitable[Any]]


@dataclass(frozen=True)
class UndecodableRequest:
    """What the gRPC server's deserializer passes on for bytes that are not a valid request
    (corrupt, or nested past protobuf's depth limit). grpc.aio answers a deserializer that
    raises with UNKNOWN and an exception dump; the handler answers INVALID_ARGUMENT."""

    reason: str


def _deserializer(request_class: type[Message]) -> Callable[[bytes], Any]:
    # The protobuf library's own text ("Exceeded upb_DecodeOptions_MaxDepth") means nothing
    # to a client: name the message and the possible causes in our terms instead.
    reason = (
        f"it is not a valid {request_class.DESCRIPTOR.full_name} message (corrupt bytes, "
        "a string that is not UTF-8, or messages nested more than 100 levels deep)"
    )

    def deserialize(data: bytes) -> Message | UndecodableRequest:
        try:
            return request_class.FromString(data)
        except DecodeError:
            return UndecodableRequest(reason)

    return deserialize


def _refusing_undecodable_stream(behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    async def checked(request: Any, context: Any) -> Any:
        if isinstance(request, UndecodableRequest):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"request cannot be decoded: {request.reason}"
            )
        async for response in behavior(request, context):
            yield response

    return checked


def _refusing_undecodable(behavior: Behavior) -> Behavior:
    async def checked(request: Any, context: Any) -> Any:
        if isinstance(request, UndecodableRequest):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"request cannot be decoded: {request.reason}"
            )
        return await behavior(request, context)

    return checked


def unary_handlers(service: ServiceDescriptor, servicer: object) -> dict[str, Handler]:
    """One handler per method of `service`, keyed by `/package.Service/Method`.

    `servicer` must have an attribute per method name (e.g. a subclass of the generated
    `FleetQServiceServicer`); a server-streaming one is an async generator. Client-streaming
    methods are refused: neither side serves them.
    """
    handlers: dict[str, Handler] = {}
    for method in service.methods:
        if method.client_streaming:
            raise ValueError(f"{method.full_name}: client-streaming methods are not supported")
        request_class = GetMessageClass(method.input_type)
        response_class = GetMessageClass(method.output_type)
        name = f"/{service.full_name}/{method.name}"
        if method.server_streaming:
            handlers[name] = grpc.unary_stream_rpc_method_handler(
                _refusing_undecodable_stream(getattr(servicer, method.name)),
                request_deserializer=_deserializer(request_class),
                response_serializer=response_class.SerializeToString,
            )
            continue
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            _refusing_undecodable(getattr(servicer, method.name)),
            request_deserializer=_deserializer(request_class),
            response_serializer=response_class.SerializeToString,
        )
    return handlers


def generic_handler(
    service: ServiceDescriptor, handlers: Mapping[str, Handler]
) -> grpc.GenericRpcHandler[Any, Any]:
    """The same handlers as a GenericRpcHandler for `grpc.aio.Server.add_generic_rpc_handlers`."""
    prefix = f"/{service.full_name}/"
    by_name = {
        name[len(prefix) :]: handler
        for name, handler in handlers.items()
        if name.startswith(prefix)
    }
    return grpc.method_handlers_generic_handler(service.full_name, by_name)
