"""Build a servicer's RpcMethodHandlers once, for the grpc.aio server and the gateway alike.

Sharing the very same handler objects is what guarantees that a REST call and a gRPC
call run the same code: the gateway calls `handler.unary_unary` in process, the server
calls it after deserialising with `request_deserializer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def unary_handlers(service: ServiceDescriptor, servicer: object) -> dict[str, Handler]:
    """One handler per method of `service`, keyed by `/package.Service/Method`.

    `servicer` must have an attribute per method name (e.g. a subclass of the generated
    `FleetQServiceServicer`). Streaming methods are refused: neither side serves them.
    """
    handlers: dict[str, Handler] = {}
    for method in service.methods:
        if method.client_streaming or method.server_streaming:
            raise ValueError(f"{method.full_name}: streaming methods are not supported")
        request_class = GetMessageClass(method.input_type)
        response_class = GetMessageClass(method.output_type)
        handlers[f"/{service.full_name}/{method.name}"] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=request_class.FromString,
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
