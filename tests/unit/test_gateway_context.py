"""The in-process ServicerContext: request metadata from headers, recorded outcomes."""

from typing import Any

import grpc
import grpc.aio
import pytest

from fleetq_server.gateway.context import (
    GatewayServicerContext,
    metadata_from_headers,
    peer_from_client,
)


def test_headers_become_lowercase_metadata() -> None:
    metadata = metadata_from_headers(
        [
            (b"Idempotency-Key", b"k1"),
            (b"Authorization", b"Bearer t"),
            (b"X-Multi", b"a"),
            (b"x-multi", b"b"),
        ]
    )

    assert metadata == (
        ("idempotency-key", "k1"),
        ("authorization", "Bearer t"),
        ("x-multi", "a"),
        ("x-multi", "b"),
    )


def test_non_ascii_and_unprintable_header_values_are_skipped() -> None:
    metadata = metadata_from_headers(
        [(b"x-note", "café".encode()), (b"x-tab", b"a\x01b"), (b"x-ok", b"fine")]
    )

    assert metadata == (("x-ok", "fine"),)


def test_grpc_metadata_prefix_is_stripped_and_reserved_grpc_headers_dropped() -> None:
    metadata = metadata_from_headers(
        [(b"Grpc-Metadata-Tenant", b"acme"), (b"grpc-timeout", b"1S"), (b"bad key!", b"x")]
    )

    assert metadata == (("tenant", "acme"),)


def test_binary_headers_are_base64_decoded_or_skipped() -> None:
    metadata = metadata_from_headers([(b"trace-bin", b"AAEC"), (b"junk-bin", b"%%%")])

    assert metadata == (("trace-bin", b"\x00\x01\x02"),)


@pytest.mark.parametrize(
    ("client", "peer"),
    [
        (("10.1.2.3", 5000), "ipv4:10.1.2.3:5000"),
        (("::1", 80), "ipv6:[::1]:80"),
        (("testclient", 1), "testclient:1"),
        (None, "unknown"),
    ],
)
def test_peer_uses_grpc_notation(client: Any, peer: str) -> None:
    assert peer_from_client(client) == peer


def test_context_is_a_grpc_aio_servicer_context_reporting_what_grpc_would() -> None:
    context = GatewayServicerContext((("a", "1"),), "ipv4:1.2.3.4:5")

    assert isinstance(context, grpc.aio.ServicerContext)
    assert context.invocation_metadata() == (("a", "1"),)
    assert context.peer() == "ipv4:1.2.3.4:5"
    assert context.time_remaining() is None
    assert context.code() is None and context.details() is None
    assert not context.cancelled() and not context.done()


async def test_abort_records_the_status_and_raises_abort_error() -> None:
    context = GatewayServicerContext()

    with pytest.raises(grpc.aio.AbortError):
        await context.abort(grpc.StatusCode.NOT_FOUND, "Step not found", (("k", "v"),))

    assert context.aborted
    assert context.code() == grpc.StatusCode.NOT_FOUND
    assert context.details() == "Step not found"
    assert context.trailing_metadata() == (("k", "v"),)


async def test_abort_twice_is_a_usage_error() -> None:
    context = GatewayServicerContext()
    with pytest.raises(grpc.aio.AbortError):
        await context.abort(grpc.StatusCode.INTERNAL, "first")

    with pytest.raises(grpc.aio.UsageError):
        await context.abort(grpc.StatusCode.INTERNAL, "second")


async def test_initial_metadata_can_be_sent_once() -> None:
    context = GatewayServicerContext()
    await context.send_initial_metadata((("x-http-code", "201"),))

    with pytest.raises(grpc.aio.UsageError):
        await context.send_initial_metadata((("x-http-code", "202"),))


async def test_http_status_override_prefers_initial_metadata() -> None:
    context = GatewayServicerContext()
    assert context.http_status_override() is None

    context.set_trailing_metadata((("x-http-code", "503"),))
    assert context.http_status_override() == "503"

    await context.send_initial_metadata((("X-Http-Code", "201"),))
    assert context.http_status_override() == "201"


def test_finish_marks_done_and_runs_callbacks_even_if_one_fails() -> None:
    context = GatewayServicerContext()
    seen: list[Any] = []

    def broken(_: Any) -> None:
        raise RuntimeError("callback bug")

    context.add_done_callback(broken)
    context.add_done_callback(seen.append)
    context.finish()

    assert context.done()
    assert seen == [context]
