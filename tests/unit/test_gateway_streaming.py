"""Server-streaming RPCs over REST: newline-delimited `{"result": ...}` lines on one chunked
200, an `{"error": ...}` line when the stream fails after it started, and the ordinary
error answer when it fails before its first message. The service is built in the test:
FleetQ's proto has no streaming RPC yet, and none needs gateway code of its own."""

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
from google.protobuf.message_factory import GetMessageClass

from fleetq_server.api.method_handlers import unary_handlers
from fleetq_server.gateway import Gateway
from fleetq_server.gateway.streaming import NDJSON_CONTENT_TYPE
from tests.unit.test_gateway_routes import build_service

ERROR_KEYS = {"detail", "error_type", "timestamp", "path"}


def streaming_gateway(fail_after: int | None = None, code: grpc.StatusCode | None = None) -> Any:
    """`GET /items/{id}/watch` streams `n` items, failing with `code` after `fail_after`."""
    service = build_service([("Watch", {"get": "/items/{id}/watch"})], streaming=True)
    method = service.methods_by_name["Watch"]
    item = GetMessageClass(method.output_type)

    async def watch(request: Any, context: Any) -> AsyncIterator[Any]:
        for index in range(request.n):
            if index == fail_after:
                if code is None:
                    raise RuntimeError("a bug with a secret in its text")
                await context.abort(code, f"stopped at {index}")
            yield item(id=f"{request.id}-{index}", n=index)

    handler = grpc.unary_stream_rpc_method_handler(watch)
    return Gateway(service, {f"/{service.full_name}/Watch": handler})


async def get(gateway: Any, path: str, method: str = "GET") -> httpx.Response:
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.request(method, path)


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.text.endswith("\n")
    return [json.loads(line) for line in response.text.splitlines()]


async def test_each_streamed_message_is_one_result_line() -> None:
    response = await get(streaming_gateway(), "/items/a/watch?n=3")

    assert response.status_code == 200
    assert response.headers["content-type"] == NDJSON_CONTENT_TYPE.decode()
    assert "content-length" not in response.headers  # chunked: sent as they come
    assert lines(response) == [
        {"result": {"id": "a-0", "n": 0, "tags": []}},
        {"result": {"id": "a-1", "n": 1, "tags": []}},
        {"result": {"id": "a-2", "n": 2, "tags": []}},
    ]


async def test_an_empty_stream_is_an_empty_200() -> None:
    response = await get(streaming_gateway(), "/items/a/watch?n=0")

    assert response.status_code == 200
    assert response.content == b""


async def test_a_stream_failing_before_its_first_message_answers_like_a_unary_call() -> None:
    gateway = streaming_gateway(fail_after=0, code=grpc.StatusCode.NOT_FOUND)

    response = await get(gateway, "/items/a/watch?n=3")

    assert response.status_code == 404
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert (body["detail"], body["error_type"], body["path"]) == (
        "stopped at 0",
        "not_found",
        "/items/a/watch",
    )


async def test_a_stream_failing_midway_ends_with_an_error_line() -> None:
    gateway = streaming_gateway(fail_after=2, code=grpc.StatusCode.RESOURCE_EXHAUSTED)

    response = await get(gateway, "/items/a/watch?n=5")

    assert response.status_code == 200
    *results, last = lines(response)
    assert [line["result"]["id"] for line in results] == ["a-0", "a-1"]
    assert set(last) == {"error"}
    assert set(last["error"]) == ERROR_KEYS
    assert last["error"]["detail"] == "stopped at 2"
    assert last["error"]["error_type"] == "resource_exhausted"
    assert last["error"]["path"] == "/items/a/watch"


async def test_a_bug_midway_ends_with_an_internal_error_line_hiding_its_text() -> None:
    response = await get(streaming_gateway(fail_after=1), "/items/a/watch?n=5")

    last = lines(response)[-1]
    assert last["error"]["error_type"] == "internal_error"
    assert "secret" not in response.text


async def test_head_on_a_stream_answers_its_headers_only() -> None:
    response = await get(streaming_gateway(), "/items/a/watch?n=3", method="HEAD")

    assert response.status_code == 200
    assert response.headers["content-type"] == NDJSON_CONTENT_TYPE.decode()
    assert response.content == b""


async def test_a_servicers_streaming_method_is_served_through_the_shared_handlers() -> None:
    service = build_service([("Watch", {"get": "/items/{id}/watch"})], streaming=True)
    item = GetMessageClass(service.methods_by_name["Watch"].output_type)

    class Servicer:
        async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
            yield item(id=request.id, n=1)

    handlers = unary_handlers(service, Servicer())
    response = await get(Gateway(service, handlers), "/items/z/watch")

    assert lines(response) == [{"result": {"id": "z", "n": 1, "tags": []}}]
