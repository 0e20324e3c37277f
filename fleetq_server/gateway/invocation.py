"""Calling a servicer's behaviour in process, and turning what it did into a status.

Shared by unary and server-streaming routes: a handler that aborts, sets a code, raises or
returns the wrong message type ends as a `CallFailure` carrying the gRPC code the client
sees (through `http_errors`) and a detail that is safe to show.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import Message

from fleetq_server.gateway.context import GatewayServicerContext
from fleetq_server.gateway.http_errors import default_detail

_LOGGER = logging.getLogger(__name__)
INTERNAL_DETAIL = "internal server error"


class CallFailure(Exception):
    """Stop handling a request and answer with this gRPC code and detail."""

    def __init__(
        self,
        code: grpc.StatusCode,
        detail: str,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.headers = headers


async def call_behaviour(
    behaviour: Callable[..., Any], request: Message, context: GatewayServicerContext
) -> Any:
    """Await coroutine handlers; run plain functions in a thread, as grpc.aio does."""
    if inspect.iscoroutinefunction(behaviour):
        return await behaviour(request, context)
    result = await asyncio.to_thread(behaviour, request, context)
    if inspect.isawaitable(result):
        result = await result
    return result


def failure_from(error: Exception, context: GatewayServicerContext, method: str) -> CallFailure:
    """The failure a handler's exception means; call it from the `except` block."""
    if isinstance(error, CallFailure):
        return error
    if isinstance(error, grpc.aio.AbortError):
        failure = status_failure(context)
        if failure is None or context.code() is None:
            _LOGGER.error("AbortError without a status from %s", method)
            return CallFailure(grpc.StatusCode.INTERNAL, INTERNAL_DETAIL)
        return failure
    _LOGGER.exception("unhandled error in %s", method)
    code = context.code()
    if code is None or code == grpc.StatusCode.OK:
        return CallFailure(grpc.StatusCode.INTERNAL, INTERNAL_DETAIL)
    # Like grpc.aio, honour a status set before the exception (the generated base
    # servicer sets UNIMPLEMENTED, then raises); never show the exception's text.
    return CallFailure(code, context.details() or default_detail(code))


def status_failure(context: GatewayServicerContext) -> CallFailure | None:
    """The failure the servicer set (abort, or a non-OK code), or None for success."""
    code = context.code()
    if context.aborted or (code is not None and code != grpc.StatusCode.OK):
        if code is None or code == grpc.StatusCode.OK:
            code = grpc.StatusCode.UNKNOWN  # aborted with OK: a servicer bug, not success
        return CallFailure(code, context.details() or default_detail(code))
    return None


def check_response(response: Any, expected: str, method: str) -> Message:
    """`response` if it is the method's output message; else a logged INTERNAL failure."""
    if not isinstance(response, Message) or response.DESCRIPTOR.full_name != expected:
        _LOGGER.error("%s returned %s instead of %s", method, type(response).__name__, expected)
        raise CallFailure(grpc.StatusCode.INTERNAL, INTERNAL_DETAIL)
    return response
