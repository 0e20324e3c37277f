"""Server-streaming RPCs over HTTP, the grpc-gateway way: one chunked 200 response of
newline-delimited JSON, a `{"result": <message>}` line per streamed message.

A stream that fails before its first message answers like a unary call (the error's own
status and the contract's error body). One that fails later has already sent its 200, so
it ends with an `{"error": <error body>}` line instead: the same detail, error_type,
timestamp and path. Any server-streaming RPC with an http rule gets this with no code of
its own; its behaviour is an async generator yielding response messages (as grpc.aio's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fleetq_server.gateway.asgi import Send
from fleetq_server.gateway.context import GatewayServicerContext
from fleetq_server.gateway.http_errors import error_body, http_error_for
from fleetq_server.gateway.invocation import (
    CallFailure,
    check_response,
    failure_from,
    status_failure,
)
from fleetq_server.gateway.response_encoding import dumps, encode_message

NDJSON_CONTENT_TYPE = b"application/x-ndjson"


@dataclass(frozen=True)
class Stream:
    """An opened stream: its first line (None for an empty stream), the rest, and the
    call's context (finished when the stream ends)."""

    first: bytes | None
    rest: AsyncIterator[bytes]
    context: GatewayServicerContext


async def open_stream(
    messages: Any, context: GatewayServicerContext, method: str, expected: str
) -> Stream:
    """Start the stream; a failure before the first message raises CallFailure."""
    if not hasattr(messages, "__aiter__"):
        raise failure_from(TypeError("a streaming behaviour must yield"), context, method)
    lines = _result_lines(messages, context, method, expected)
    return Stream(first=await anext(lines, None), rest=lines, context=context)


async def _result_lines(
    messages: AsyncIterator[Any], context: GatewayServicerContext, method: str, expected: str
) -> AsyncIterator[bytes]:
    try:
        async for message in messages:
            checked = check_response(message, expected, method)
            yield dumps({"result": encode_message(checked)}) + b"\n"
    except Exception as error:
        raise failure_from(error, context, method) from None
    failure = status_failure(context)
    if failure is not None:
        raise failure


async def send_stream(stream: Stream, send: Send, path: str, *, head: bool) -> None:
    """Answer 200 and send the stream's lines as they come (none for HEAD)."""
    try:
        await _send_lines(stream, send, path, head=head)
    finally:
        stream.context.finish()


async def _send_lines(stream: Stream, send: Send, path: str, *, head: bool) -> None:
    headers = [(b"content-type", NDJSON_CONTENT_TYPE)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if head:
        await stream.rest.aclose()  # type: ignore[attr-defined]
        await send({"type": "http.response.body", "body": b""})
        return
    if stream.first is not None:
        await send({"type": "http.response.body", "body": stream.first, "more_body": True})
    try:
        async for line in stream.rest:
            await send({"type": "http.response.body", "body": line, "more_body": True})
    except CallFailure as failure:
        error = http_error_for(failure.code)
        line = dumps({"error": error_body(failure.detail, error.error_type, path)}) + b"\n"
        await send({"type": "http.response.body", "body": line, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
