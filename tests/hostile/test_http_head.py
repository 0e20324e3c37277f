"""The request head (request line + headers) is capped: 431 or 414 in the contract's error
body, then the connection closes, and the pod's memory does not grow meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerFactory
from tests.hostile.raw_http import (
    assert_error_body,
    connect,
    read_response,
    send_in_background,
    wait_for_close,
)
from tests.support.server_process import ServerProcess

HEAD_CAP = 32 * 1024  # FLEETQ_HTTP_MAX_HEADER_BYTES's default


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def endless_header_lines(total: int) -> Iterator[bytes]:
    yield b"GET /health HTTP/1.1\r\nHost: fleetq\r\n"
    line = b"X-Filler: " + b"f" * 54 + b"\r\n"  # 66 bytes, as many as it takes
    chunk = line * 1000
    for _ in range(total // len(chunk)):
        yield chunk


def test_endless_header_lines_get_431_and_do_not_grow_the_pod(pod: ServerProcess) -> None:
    before = rss_bytes(pod.pid)
    with connect(pod) as sock:
        sender = send_in_background(sock, endless_header_lines(8 << 20))
        response = read_response(sock)
        sender.join()
        wait_for_close(sock)

    body = assert_error_body(response, 431, "validation_error")
    assert str(HEAD_CAP) in body["detail"]
    assert response.headers["connection"] == "close"
    # Eight MiB of headers went in; at most the capped head was ever held.
    assert rss_bytes(pod.pid) - before < 16 << 20


def test_a_url_longer_than_the_cap_gets_414(pod: ServerProcess) -> None:
    with connect(pod) as sock:
        sender = send_in_background(sock, [b"GET /status/", b"a" * (4 << 20)])
        response = read_response(sock)
        sender.join()

    body = assert_error_body(response, 414, "validation_error")
    assert body["path"].startswith("/status/aaa")
    assert len(body["path"]) < 200  # the refused URL is not echoed whole


def test_a_head_just_under_the_cap_is_served(pod: ServerProcess) -> None:
    headers = {f"x-large-{i}": "v" * 1000 for i in range(28)}  # ~29 KiB of headers
    response = httpx.get(f"{pod.http_url}/health", headers=headers, timeout=20)
    assert response.status_code == 200, response.text


def test_many_small_requests_on_one_connection_each_get_the_whole_cap(pod: ServerProcess) -> None:
    # The cap is per request: a kept-alive connection does not accumulate a budget.
    headers = {f"x-large-{i}": "v" * 1000 for i in range(20)}
    with httpx.Client(base_url=pod.http_url, timeout=20) as client:
        for _ in range(5):
            assert client.get("/health", headers=headers).status_code == 200


def test_bytes_that_are_not_http_get_the_contract_error_body(pod: ServerProcess) -> None:
    with connect(pod) as sock:
        sock.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        response = read_response(sock)

    assert_error_body(response, 400, "validation_error")


def test_answers_do_not_name_the_server_software(pod: ServerProcess) -> None:
    response = httpx.get(f"{pod.http_url}/health", timeout=20)
    assert response.status_code == 200
    assert "server" not in response.headers
