"""A client still sending a body the pod refused reads the error, not a connection reset:
the pod answers, then reads and drops the rest (for a bounded time and bytes) before it
closes, as nginx's lingering close does."""

from __future__ import annotations

import pytest

from tests.conftest import ServerFactory
from tests.hostile.raw_http import assert_error_body, connect, read_response, wait_for_close
from tests.support.server_process import ServerProcess

# More than loopback's socket buffers absorb, so the client is still sending when the pod
# answers; less than the pod lingers for (fleetq_server.http_server.LINGER_BYTES).
BODY_BYTES = 12 << 20


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory()


def oversized_submit(*headers: bytes) -> bytes:
    head = [
        b"POST /submit HTTP/1.1",
        b"Host: fleetq",
        b"Content-Type: application/json",
        b"Content-Length: %d" % BODY_BYTES,
        *headers,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + b"[" + b" " * (BODY_BYTES - 2) + b"]"


@pytest.mark.parametrize("connection", [b"Connection: close", b"Connection: keep-alive"])
def test_a_client_that_sends_its_whole_oversized_body_then_reads_gets_the_400(
    pod: ServerProcess, connection: bytes
) -> None:
    with connect(pod) as sock:
        sock.sendall(oversized_submit(connection))  # a reset would raise here
        response = read_response(sock)
        wait_for_close(sock)

    body = assert_error_body(response, 400, "validation_error")
    assert "exceeds" in body["detail"]
    assert response.headers["connection"] == "close"
