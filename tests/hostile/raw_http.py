"""HTTP/1.1 over a plain socket, for requests no well-behaved client would send."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from typing import Any

from tests.support.server_process import ServerProcess

# Bounds, not performance assertions: a server that never answers fails the test.
TIMEOUT_S = 20.0
ERROR_KEYS = {"detail", "error_type", "timestamp", "path"}


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def connect(pod: ServerProcess, timeout: float = TIMEOUT_S) -> socket.socket:
    """A TCP connection to the pod's REST port."""
    return socket.create_connection(("127.0.0.1", pod.http_port), timeout=timeout)


def read_response(sock: socket.socket) -> RawResponse:
    """One response with a Content-Length body; raises on EOF before it is complete."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        body += _recv(sock)
    return RawResponse(int(status_line.split(" ")[1]), headers, body[:length])


def wait_for_close(sock: socket.socket) -> bytes:
    """Read until the server closes the connection (EOF or reset); return what came.
    A server that keeps it open past the socket's timeout fails the test (TimeoutError)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def send_in_background(sock: socket.socket, chunks: Any) -> threading.Thread:
    """Send every chunk from a thread, stopping quietly once the server hangs up, so the
    test can read the answer meanwhile as a real client would."""

    def send() -> None:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except OSError:
            pass

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def assert_error_body(response: RawResponse, status: int, error_type: str) -> dict[str, Any]:
    """The contract's error body with this status and error_type; returns it."""
    assert response.status == status, (response.status, response.body)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == ERROR_KEYS, body
    assert body["error_type"] == error_type, body
    return body


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("the server closed the connection before a whole response")
    return chunk
