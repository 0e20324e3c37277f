"""HTTP push targets against a real pod and a real local HTTP server: 2xx completes with
the body as result, 4xx fails without retry, 5xx and a slow answer retry, and 429 with
Retry-After waits at least that long."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest

from tests.blackbox.test_remote_workers import status, submit
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

WAIT_S = 30
RETRY_AFTER_S = 2
SLOW_TIMEOUT_S = 0.5


class Target(BaseHTTPRequestHandler):
    """Answers by path; the first request to /flaky, /slow and /later misbehaves."""

    seen: ClassVar[list[tuple[str, dict[str, str], dict[str, object], float]]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with self.lock:
            calls = sum(1 for path, *_ in self.seen if path == self.path)
            self.seen.append((self.path, dict(self.headers), body, time.monotonic()))
        first = calls == 0
        if self.path == "/ok":
            self._answer(200, json.dumps({"echo": body["args"]}))
        elif self.path == "/empty":
            self._answer(204, "")
        elif self.path == "/bad":
            self._answer(400, "no such thing")
        elif self.path == "/flaky":
            self._answer(503, "down") if first else self._answer(200, '"recovered"')
        elif self.path == "/slow":
            if first:
                time.sleep(SLOW_TIMEOUT_S * 4)
            self._answer(200, '"fast now"')
        elif self.path == "/later":
            if first:
                self._answer(429, "slow down", {"Retry-After": str(RETRY_AFTER_S)})
            else:
                self._answer(200, '"waited"')

    def _answer(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        data = text.encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Target)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory, target: str) -> ServerProcess:
    targets = {
        "push_ok": f"{target}/ok",
        "push_empty": f"{target}/empty",
        "push_bad": f"{target}/bad",
        "push_flaky": f"{target}/flaky",
        "push_slow": {"url": f"{target}/slow", "timeout": SLOW_TIMEOUT_S},
        "push_later": f"{target}/later",
    }
    env = {
        "FLEETQ_PUSH_TARGETS": json.dumps(targets),
        "FLEETQ_RETRY_BACKOFF_BASE": "0",
        "FLEETQ_RETRY_BACKOFF_MAX": "0",
    }
    return module_server_factory(env=env, demo_handlers=False)


def finished(client: httpx.Client, step_id: str) -> dict[str, object]:
    return wait_until(
        lambda: (s := status(client, step_id))["status"] in ("completed", "failed") and s,
        timeout=WAIT_S,
        description=f"step {step_id} to finish",
    )


def requests_to(path: str) -> list[tuple[str, dict[str, str], dict[str, object], float]]:
    with Target.lock:
        return [seen for seen in Target.seen if seen[0] == path]


def test_a_2xx_completes_with_the_body_and_the_request_carries_the_step(
    client: httpx.Client,
) -> None:
    step_id = submit(client, "push_ok", args={"n": 7}, metadata={"m": 1})

    step = finished(client, step_id)

    assert (step["status"], step["result"]) == ("completed", {"echo": {"n": 7}})
    [(_, headers, body, _)] = requests_to("/ok")
    assert body == {
        "step_id": step_id,
        "attempt": 1,
        "type": "push_ok",
        "args": {"n": 7},
        "metadata": {"m": 1},
    }
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["x-fleetq-step-id"] == step_id and lowered["x-fleetq-attempt"] == "1"
    key = client.get(f"/idempotency/{step_id}").json()["idempotency_key"]
    assert lowered["idempotency-key"] == key
    empty = finished(client, submit(client, "push_empty"))
    assert (empty["status"], empty["result"]) == ("completed", None)


def test_a_4xx_fails_at_once_without_retry(client: httpx.Client) -> None:
    step = finished(client, submit(client, "push_bad", max_retries=3))

    assert (step["status"], step["retry_count"]) == ("failed", 0)
    assert step["error"] == {
        "type": "PermanentFailure",
        "message": "HTTP 400 from the push target: no such thing",
    }


def test_a_5xx_and_a_timeout_retry(client: httpx.Client) -> None:
    flaky = finished(client, submit(client, "push_flaky"))
    slow = finished(client, submit(client, "push_slow"))

    assert (flaky["status"], flaky["retry_count"], flaky["result"]) == ("completed", 1, "recovered")
    assert (slow["status"], slow["retry_count"], slow["result"]) == ("completed", 1, "fast now")
    assert len(requests_to("/slow")) == 2


def test_retry_after_is_honoured(client: httpx.Client) -> None:
    step = finished(client, submit(client, "push_later"))

    assert (step["status"], step["result"]) == ("completed", "waited")
    first, second = requests_to("/later")
    assert second[3] - first[3] >= RETRY_AFTER_S - 0.05
