"""Hostile input and failing dependencies: clear errors, bounded waits, no harm to others.

Each hostile request runs while a well-behaved client keeps submitting and reading steps;
it must keep getting answers. Database work started for a caller that gave up (gRPC
deadline, HTTP disconnect) is cancelled in PostgreSQL, shown through pg_stat_activity
while a direct connection holds the lock the request waits on.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg
import grpc
import grpc.aio
import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from fleetq_server.embedded_db import Release, start_embedded_postgres
from tests.blackbox.contract import FAST_POD_ENV
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess

LIMIT = 1 << 20  # fleetq_server.server.MAX_REQUEST_BYTES
ERROR_KEYS = {"detail", "error_type", "timestamp", "path"}
# How a blocked step read shows in pg_stat_activity (the store's step_get statement).
STEP_READ = "%FROM fleetq_steps WHERE step_id = $1%"
# Bounds, not performance assertions: a request that hangs fails the test instead.
CLIENT_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env=FAST_POD_ENV)


def assert_error(response: httpx.Response, status: int, error_type: str, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["error_type"] == error_type
    for word in words:
        assert word in body["detail"], body["detail"]


class WellBehavedClient:
    """Submits a step and reads it back, over and over, recording anything but success."""

    def __init__(self, pod: ServerProcess) -> None:
        self._http = httpx.Client(base_url=pod.http_url, timeout=CLIENT_TIMEOUT_S)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="well-behaved", daemon=True)
        self.answers = 0
        self.failures: list[str] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                submitted = self._http.post("/submit", json={"type": "good", "args": {"n": 1}})
                status = self._http.get(f"/status/{submitted.json()['step_id']}")
                if submitted.status_code != 201 or status.status_code != 200:
                    self.failures.append(f"{submitted.status_code} {status.status_code}")
                self.answers += 1
            except Exception as exc:
                self.failures.append(repr(exc))

    @contextmanager
    def running(self) -> Iterator[WellBehavedClient]:
        self._thread.start()
        try:
            yield self
            answered = self.answers
            deadline = time.monotonic() + CLIENT_TIMEOUT_S
            while self.answers <= answered + 1 and time.monotonic() < deadline:
                time.sleep(0.01)  # two more answers after the hostile part: not just early ones
        finally:
            self._stop.set()
            self._thread.join()
            self._http.close()
        assert self.failures == []
        assert self.answers > answered + 1


def raw_exchange(pod: ServerProcess, head: bytes, chunks: Iterator[bytes]) -> tuple[int, dict]:
    """Send a request over a plain socket (stopping quietly if the server hangs up), then
    read one response; returns its status and JSON body."""
    with socket.create_connection(("127.0.0.1", pod.http_port), timeout=CLIENT_TIMEOUT_S) as sock:
        try:
            sock.sendall(head)
            for chunk in chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed while we were still sending
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536) or b"\r\n\r\n"
        head_part, _, body = data.partition(b"\r\n\r\n")
        lines = head_part.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            more = sock.recv(65536)
            if not more:
                break
            body += more
        return int(lines[0].split()[1]), json.loads(body)


# ----------------------------------------------------------------------------- hostile input


def test_streamed_body_over_the_limit_is_refused_without_waiting_for_the_rest(
    pod: ServerProcess,
) -> None:
    chunk = b"x" * 65536
    count = LIMIT // len(chunk) + 2  # just past the limit; the body never ends
    head = (
        b"POST /submit HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    framed = (b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(count))

    with WellBehavedClient(pod).running():
        status, body = raw_exchange(pod, head, framed)

    assert status == 400
    assert body["error_type"] == "validation_error"
    assert body["detail"] == f"request body exceeds {LIMIT} bytes"


def test_declared_body_over_the_limit_is_refused_before_any_byte_is_sent(
    pod: ServerProcess,
) -> None:
    head = (
        b"POST /submit HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 104857600\r\n\r\n"
    )

    with WellBehavedClient(pod).running():
        status, body = raw_exchange(pod, head, iter(()))

    assert status == 400
    assert set(body) == ERROR_KEYS and body["error_type"] == "validation_error"


def nested(depth: int) -> bytes:
    return b'{"type": "t", "args": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (nested(40), ("nests deeper than",)),
        # Past FLEETQ_MAX_JSON_VALUES: counted, and refused, before any parsing.
        (nested(140_000), ("JSON values",)),  # ~0.95 MiB of braces
        (b"[" * 500_000 + b"]" * 500_000, ("JSON values",)),
        (b'{"type": "t", "args": {"s": "\xff\xfe"}}', ("not valid UTF-8",)),
        (b'{"type": "t", "args": {"x": NaN}}', ("NaN", "finite")),
        (b'{"type": "t", "args": {"x": -Infinity}}', ("-Infinity",)),
        (b'{"type": "t", "args": {"x": 1e999}}', ("1e999", "out of range")),
        (b'{"type": "t", "args": {"x": ' + b"9" * 5000 + b"}}", ("out of range",)),
        (b'{"type": "t", "args": {"a": 1, "a": 2}}', ("duplicate key",)),
        (b'{"type": "t\\u0000", "args": {}}', ("type",)),
    ],
    ids=[
        "nested-41",
        "nested-140k",
        "arrays-500k",
        "not-utf8",
        "nan",
        "minus-infinity",
        "overflowing-float",
        "5000-digit-integer",
        "duplicate-key",
        "nul-in-type",
    ],
)
def test_hostile_json_gets_a_400_naming_the_problem(
    pod: ServerProcess, body: bytes, words: tuple[str, ...]
) -> None:
    with WellBehavedClient(pod).running(), httpx.Client(timeout=CLIENT_TIMEOUT_S) as http:
        response = http.post(
            f"{pod.http_url}/submit", content=body, headers={"content-type": "application/json"}
        )

    assert_error(response, 400, "validation_error", *words)


def test_huge_but_legal_json_is_accepted_and_read_back(pod: ServerProcess) -> None:
    # ~0.8 MiB in 9,000 values, under the default FLEETQ_MAX_JSON_VALUES (10,000)
    args = {f"key{i:06d}": f"{i:080d}" for i in range(9_000)}
    payload = {"type": "bulky", "args": args}

    with WellBehavedClient(pod).running(), httpx.Client(timeout=CLIENT_TIMEOUT_S) as http:
        submitted = http.post(f"{pod.http_url}/submit", json=payload)
        status = http.get(f"{pod.http_url}/status/{submitted.json()['step_id']}")

    assert submitted.status_code == 201, submitted.text
    assert status.json()["payload"]["args"] == args


def test_ids_longer_than_any_real_id_are_refused_over_rest_and_grpc(pod: ServerProcess) -> None:
    with (
        WellBehavedClient(pod).running(),
        httpx.Client(base_url=pod.http_url, timeout=CLIENT_TIMEOUT_S) as http,
        grpc.insecure_channel(pod.grpc_target) as channel,
    ):
        stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
        longest = http.get(f"/status/{'s' * 128}")
        too_long = http.get(f"/status/{'s' * 129}")
        very_long = http.get(f"/idempotency/{'s' * 10_000}")
        long_key = http.post(
            "/submit", json={"type": "t", "args": {}}, headers={"Idempotency-Key": "k" * 256}
        )
        with pytest.raises(grpc.RpcError) as grpc_error:
            stub.GetStepStatus(pb.GetStepStatusRequest(step_id="s" * 129), timeout=10)

    assert_error(longest, 404, "not_found")
    assert_error(too_long, 400, "validation_error", "step_id", "128")
    assert_error(very_long, 400, "validation_error", "step_id")
    assert_error(long_key, 400, "validation_error", "Idempotency-Key header", "255")
    assert grpc_error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_message_over_the_limit_is_resource_exhausted(pod: ServerProcess) -> None:
    big = pb.SubmitStepRequest(type="t")
    big.args.update({"blob": "x" * (LIMIT + 1)})

    with WellBehavedClient(pod).running(), grpc.insecure_channel(pod.grpc_target) as channel:
        stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.SubmitStep(big, timeout=10)
        after = stub.GetHealth(pb.GetHealthRequest(), timeout=10)  # same channel, still fine

    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert after.status == "healthy"


# ------------------------------------------------------------- cancellation and bounded waits


async def poll_until(condition: Callable[[], Awaitable[object]], description: str) -> None:
    """Await `condition()` until it is truthy (without blocking the event loop)."""
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {description}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def steps_table_locked(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """Hold ACCESS EXCLUSIVE on fleetq_steps from a direct connection: every statement on
    the table waits. Yields the connection, which can still query pg_stat_activity."""
    connection = await asyncpg.connect(database_url)
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute("LOCK TABLE fleetq_steps IN ACCESS EXCLUSIVE MODE")
        try:
            yield connection
        finally:
            await transaction.rollback()
    finally:
        await connection.close()


async def blocked_statements(connection: asyncpg.Connection, like: str = "%") -> int:
    """Statements of this database waiting on a lock right now, whose text is `like`."""
    await connection.execute("SELECT pg_stat_clear_snapshot()")  # fresh, even in a transaction
    count: int = await connection.fetchval(
        """
        SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND state = 'active'
          AND wait_event_type = 'Lock' AND query LIKE $1
        """,
        like,
    )
    return count


async def blocked_step_reads(connection: asyncpg.Connection) -> int:
    return await blocked_statements(connection, STEP_READ)


async def test_grpc_deadline_cancels_the_database_query(
    server_factory: ServerFactory, database_url: str
) -> None:
    pod = server_factory(env=FAST_POD_ENV)
    async with (
        grpc.aio.insecure_channel(pod.grpc_target) as channel,
        steps_table_locked(database_url) as lock,
    ):
        stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
        call = stub.GetStepStatus(pb.GetStepStatusRequest(step_id="step_x"), timeout=2.0)
        await poll_until(lambda: blocked_step_reads(lock), "the read to block on the lock")

        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call

        # The lock is still held: only a cancelled statement leaves the wait.
        await poll_until(
            lambda: _none(blocked_step_reads(lock)), "the read to be cancelled in PostgreSQL"
        )
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    async with grpc.aio.insecure_channel(pod.grpc_target) as channel:
        stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as after:
            await stub.GetStepStatus(pb.GetStepStatusRequest(step_id="step_x"), timeout=10)
    assert after.value.code() == grpc.StatusCode.NOT_FOUND  # the pod serves on


async def test_http_client_disconnect_cancels_the_database_query(
    server_factory: ServerFactory, database_url: str
) -> None:
    pod = server_factory(env=FAST_POD_ENV)
    async with steps_table_locked(database_url) as lock:
        _, writer = await asyncio.open_connection("127.0.0.1", pod.http_port)
        writer.write(b"GET /status/step_x HTTP/1.1\r\nHost: t\r\n\r\n")
        await writer.drain()
        await poll_until(lambda: blocked_step_reads(lock), "the read to block on the lock")

        writer.close()  # the client gives up
        await writer.wait_closed()

        await poll_until(
            lambda: _none(blocked_step_reads(lock)), "the read to be cancelled in PostgreSQL"
        )
    async with httpx.AsyncClient(base_url=pod.http_url, timeout=CLIENT_TIMEOUT_S) as http:
        assert_error(await http.get("/status/step_x"), 404, "not_found")


async def _none(count: Awaitable[int]) -> bool:
    return await count == 0


async def test_exhausted_pool_fails_fast_with_database_error(
    server_factory: ServerFactory, database_url: str
) -> None:
    pod = server_factory(env=FAST_POD_ENV)
    async with (
        httpx.AsyncClient(base_url=pod.http_url, timeout=CLIENT_TIMEOUT_S) as http,
        grpc.aio.insecure_channel(pod.grpc_target) as channel,
    ):
        stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
        async with steps_table_locked(database_url) as lock:
            blocked = [asyncio.create_task(http.get(f"/status/step_{i}")) for i in range(12)]
            await poll_until(  # the pool holds 10 connections: all now wait on the lock
                lambda: _at_least(blocked_statements(lock), 10), "the pool to be used up"
            )

            rest, grpc_call = await asyncio.gather(
                http.get("/status/step_probe"),
                stub.GetStepStatus(
                    pb.GetStepStatusRequest(step_id="step_probe"), timeout=CLIENT_TIMEOUT_S
                ),
                return_exceptions=True,
            )
        answers = await asyncio.gather(*blocked)  # the lock is gone: they finish

    assert isinstance(rest, httpx.Response)
    assert_error(rest, 500, "database_error")  # after POOL_ACQUIRE_TIMEOUT_S, not a hang
    assert isinstance(grpc_call, grpc.aio.AioRpcError)
    assert grpc_call.code() == grpc.StatusCode.UNAVAILABLE
    assert {answer.status_code for answer in answers} <= {404, 500}
    assert 404 in {answer.status_code for answer in answers}


async def _at_least(count: Awaitable[int], wanted: int) -> bool:
    return await count >= wanted


def test_database_going_away_fails_requests_fast_with_database_error(
    server_factory: ServerFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A private PostgreSQL this test may stop (under /tmp: Unix socket paths are short).
    database = start_embedded_postgres(
        Path(tmp_path_factory.mktemp("gone")) / "pgdata", release=Release.STOP
    )
    try:
        pod = server_factory(env=FAST_POD_ENV, database_url=database.url)
        with httpx.Client(base_url=pod.http_url, timeout=CLIENT_TIMEOUT_S) as http:
            before = http.post("/submit", json={"type": "t", "args": {}})
            database.stop()

            submit = http.post("/submit", json={"type": "t", "args": {}})
            status = http.get(f"/status/{before.json()['step_id']}")
            with grpc.insecure_channel(pod.grpc_target) as channel:
                stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
                with pytest.raises(grpc.RpcError) as grpc_error:
                    stub.GetStepStatus(
                        pb.GetStepStatusRequest(step_id=before.json()["step_id"]),
                        timeout=CLIENT_TIMEOUT_S,
                    )
            pod.wait_until_healthy(CLIENT_TIMEOUT_S, expect_status=503)
    finally:
        database.stop()

    assert before.status_code == 201
    assert_error(submit, 500, "database_error")
    assert_error(status, 500, "database_error")
    assert grpc_error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert pod.returncode is None  # still up, answering
