"""Real clients of a pod, and the load shapes the scenarios drive them with.

gRPC clients are grpc.aio stubs, one channel (and TCP connection) each: channels opened
with equal arguments would otherwise share one connection through gRPC's global subchannel
pool. REST clients are httpx.AsyncClient instances (or aiohttp sessions, a client that costs
far less CPU per request), HTTP/1.1 with keep-alive. Every failed call raises: a benchmark
with errors measures nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import struct
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import grpc
import httpx
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc
from google.protobuf import struct_pb2

from fleetq_client import AsyncFleetQClient

GRPC_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
_TIMEOUT_S = 60.0


class Submitter(Protocol):
    """Submits steps on behalf of one of several concurrent clients."""

    async def submit(self, client: int, step_type: str, args: dict[str, Any]) -> None:
        """One single submit by client number `client`."""
        ...


def step_request(step_type: str, args: dict[str, Any]) -> pb.SubmitStepRequest:
    """One SubmitStep request of `step_type` with `args`."""
    struct = struct_pb2.Struct()
    struct.update(args)
    return pb.SubmitStepRequest(type=step_type, args=struct)


def batch_request(step_type: str, size: int) -> pb.SubmitBatchRequest:
    """A SubmitBatch of `size` small steps of `step_type`."""
    return pb.SubmitBatchRequest(steps=[step_request(step_type, {"n": n}) for n in range(size)])


class GrpcClients:
    """`count` gRPC clients of one pod, each with its own channel."""

    def __init__(self, target: str, count: int) -> None:
        self._channels = [
            grpc.aio.insecure_channel(target, options=GRPC_OPTIONS) for _ in range(count)
        ]
        self._stubs = [fleetq_pb2_grpc.FleetQServiceStub(channel) for channel in self._channels]

    async def __aenter__(self) -> GrpcClients:
        await asyncio.gather(*(channel.channel_ready() for channel in self._channels))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.gather(*(channel.close(grace=None) for channel in self._channels))

    async def submit(self, client: int, step_type: str, args: dict[str, Any]) -> None:
        await self._stubs[client].SubmitStep(step_request(step_type, args), timeout=_TIMEOUT_S)

    async def submit_batch(self, client: int, request: pb.SubmitBatchRequest) -> None:
        """One SubmitBatch call by client number `client`."""
        response = await self._stubs[client].SubmitBatch(request, timeout=_TIMEOUT_S)
        if response.created_count != len(request.steps):
            raise RuntimeError(f"SubmitBatch created {response.created_count} steps")


def fleetq_bulk_call() -> str | None:
    """The shipped client's bulk call: `submit_many`, else `submit_batch`, else None."""
    for name in ("submit_many", "submit_batch"):
        if hasattr(AsyncFleetQClient, name):
            return name
    return None


class FleetQClient:
    """The shipped `AsyncFleetQClient`, one per process and shared by every coroutine, as
    an application uses it (the `client` number of `submit` is ignored)."""

    def __init__(self, target: str) -> None:
        self._client = AsyncFleetQClient(target)

    async def __aenter__(self) -> FleetQClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.close()

    async def submit(self, client: int, step_type: str, args: dict[str, Any]) -> None:
        await self._client.submit(step_type, args)

    @property
    def bulk_call(self) -> str | None:
        """The client's bulk call (see `fleetq_bulk_call`)."""
        return fleetq_bulk_call()

    async def submit_bulk(self, steps: list[dict[str, Any]]) -> None:
        """`steps` ({"type", "args"} each) in one call of `bulk_call`."""
        assert self.bulk_call is not None
        answer = await getattr(self._client, self.bulk_call)(steps)
        stored = len(answer) if isinstance(answer, list) else len(answer.steps)
        if stored != len(steps):
            raise RuntimeError(f"{self.bulk_call} stored {stored} of {len(steps)} steps")


class RestClients:
    """`count` REST clients of one pod (POST /submit), each with up to `connections`
    keep-alive connections (HTTP/1.1 runs one request at a time per connection)."""

    def __init__(self, base_url: str, count: int, connections: int = 1) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._clients = [
            httpx.AsyncClient(base_url=base_url, limits=limits, timeout=_TIMEOUT_S)
            for _ in range(count)
        ]

    async def __aenter__(self) -> RestClients:
        # Open every connection before any timing starts.
        await asyncio.gather(*(client.get("/health") for client in self._clients))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.gather(*(client.aclose() for client in self._clients))

    async def submit(self, client: int, step_type: str, args: dict[str, Any]) -> None:
        response = await self._clients[client].post(
            "/submit", json={"type": step_type, "args": args}
        )
        if response.status_code != 201:
            raise RuntimeError(f"POST /submit answered {response.status_code}: {response.text}")


class AiohttpRestClients:
    """RestClients with aiohttp sessions: the REST row of `make bench-peers` as issue #13
    measured it. httpx spends about 2 ms of CPU per request, so from one Python process it
    caps the row at ~500/s and measures itself; aiohttp spends a fraction of that."""

    def __init__(self, base_url: str, count: int, connections: int = 1) -> None:
        self._base_url = base_url
        self._count = count
        self._connections = connections
        self._sessions: list[aiohttp.ClientSession] = []

    async def __aenter__(self) -> AiohttpRestClients:
        timeout = aiohttp.ClientTimeout(total=_TIMEOUT_S)
        self._sessions = [
            aiohttp.ClientSession(
                self._base_url,
                connector=aiohttp.TCPConnector(limit=self._connections),
                timeout=timeout,
            )
            for _ in range(self._count)
        ]
        # Open every connection before any timing starts.
        await asyncio.gather(*(self._health(session) for session in self._sessions))
        return self

    @staticmethod
    async def _health(session: aiohttp.ClientSession) -> None:
        async with session.get("/health") as response:
            await response.read()

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.gather(*(session.close() for session in self._sessions))

    async def submit(self, client: int, step_type: str, args: dict[str, Any]) -> None:
        body = {"type": step_type, "args": args}
        async with self._sessions[client].post("/submit", json=body) as response:
            text = await response.text()
            if response.status != 201:
                raise RuntimeError(f"POST /submit answered {response.status}: {text}")


async def spread(
    total: int, concurrency: int, call: Callable[[int, int], Awaitable[None]]
) -> float:
    """Make `total` calls `call(worker, i)` from `concurrency` workers, each as fast as it
    can; returns the elapsed seconds."""
    numbers = itertools.count()

    async def worker(number: int) -> None:
        while (i := next(numbers)) < total:
            await call(number, i)

    started = time.perf_counter()
    await asyncio.gather(*(worker(number) for number in range(concurrency)))
    return time.perf_counter() - started


async def paced(count: int, rate: float, call: Callable[[int], Coroutine[Any, Any, None]]) -> None:
    """Start call(i) for i < count at `rate` per second on a fixed schedule, without
    waiting for earlier calls (an open-loop load, as independent clients make)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    calls: list[asyncio.Task[None]] = []
    for i in range(count):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        calls.append(asyncio.create_task(call(i)))
    await asyncio.gather(*calls)


async def submit_singles(
    submitter: Submitter, step_type: str, total: int, concurrency: int
) -> float:
    """`total` single submits from `concurrency` clients; returns elapsed seconds."""

    async def one(client: int, n: int) -> None:
        await submitter.submit(client, step_type, {"n": n})

    return await spread(total, concurrency, one)


async def submit_batches(
    clients: GrpcClients, requests: Sequence[pb.SubmitBatchRequest], concurrency: int
) -> float:
    """Every prepared SubmitBatch, from `concurrency` callers; returns elapsed seconds."""

    async def one(client: int, n: int) -> None:
        await clients.submit_batch(client, requests[n])

    return await spread(len(requests), concurrency, one)


WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_submit.lua"
_WRK_RATE = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)
_WRK_FAILURES = re.compile(r"^\s*(Non-2xx or 3xx responses|Socket errors):.*$", re.MULTILINE)
_WRK_POLL_S = 0.1


async def wrk_submits(
    base_url: str,
    step_type: str,
    connections: int,
    total: int,
    stored: Callable[[], Awaitable[int]],
) -> float:
    """POST /submit from wrk over `connections` keep-alive connections until `stored()`
    reaches `total`; returns the seconds `total` submits took at wrk's measured rate.

    wrk is a C client, so the pod saturates before it does (an httpx client in Python
    saturates its own core first). wrk can only stop on time or on SIGINT, after which it
    still reports requests and rate over the time it ran: so it gets SIGINT once enough
    steps are stored.
    """
    argv = ["wrk", "-t1", f"-c{connections}", "-d600s", "-s", str(WRK_SCRIPT), base_url]
    body = json.dumps({"type": step_type, "args": {"n": 1}})
    process = await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, "WRK_BODY": body},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        while process.returncode is None:  # the database counts: poll it
            if await stored() >= total:
                process.send_signal(signal.SIGINT)
                break
            await asyncio.sleep(_WRK_POLL_S)
        output = (await process.communicate())[0].decode(errors="replace")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    rate = _WRK_RATE.search(output)
    # wrk prints these lines only when their counts are not all zero.
    if rate is None or _WRK_FAILURES.search(output):
        raise RuntimeError(f"wrk failed:\n{output}")
    return total / float(rate.group(1))


_H2LOAD_ELAPSED = re.compile(r"^finished in ([0-9.]+)(us|ms|s),", re.MULTILINE)
_H2LOAD_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_H2LOAD_REQUESTS = re.compile(
    r"^requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded", re.MULTILINE
)


def grpc_frame(message: bytes) -> bytes:
    """`message` as one gRPC length-prefixed message (uncompressed)."""
    return b"\x00" + struct.pack(">I", len(message)) + message


async def h2load_submits(target: str, step_type: str, connections: int, total: int) -> float:
    """`total` SubmitStep calls from h2load over `connections` HTTP/2 connections, one call
    in flight on each; returns the elapsed seconds h2load measured.

    h2load (nghttp2) is a C client: like wrk for REST, it lets the pod saturate before the
    client does. It speaks gRPC's wire format here (a framed protobuf body, the gRPC
    content type and `te: trailers`) but cannot read gRPC's status, which arrives in
    trailers; so the caller must check that the database stored every step.
    """
    body = grpc_frame(step_request(step_type, {"n": 1}).SerializeToString())
    with tempfile.NamedTemporaryFile(prefix="fleetq-h2load-", suffix=".bin") as body_file:
        body_file.write(body)
        body_file.flush()
        argv = [
            "h2load", f"-n{total}", f"-c{connections}", "-m1", "-t1",
            "-d", body_file.name,
            "-H", "content-type: application/grpc",
            "-H", "te: trailers",
            f"http://{target}/fleetq.v1.FleetQService/SubmitStep",
        ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output = (await process.communicate())[0].decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"h2load failed:\n{output}")
    return h2load_elapsed_s(output, total)


def h2load_elapsed_s(output: str, total: int) -> float:
    """The seconds h2load's report says `total` requests took; raises RuntimeError unless
    every one of them succeeded (an HTTP 2xx: gRPC statuses are not visible to it)."""
    elapsed = _H2LOAD_ELAPSED.search(output)
    requests = _H2LOAD_REQUESTS.search(output)
    if elapsed is None or requests is None:
        raise RuntimeError(f"h2load printed no report:\n{output}")
    if int(requests.group(2)) != total:
        raise RuntimeError(f"h2load: {requests.group(2)} of {total} calls succeeded:\n{output}")
    return float(elapsed.group(1)) * _H2LOAD_UNIT_S[elapsed.group(2)]
