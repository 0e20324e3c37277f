"""What sending `x-http-code` as header metadata costs a gRPC call, side by side.

    python -m benchmarks.http_code_metadata [--calls 2000] [--rounds 9]

A grpc.aio server in a child process answers three unary methods that differ only in how
they carry the code: not at all (a 200), in the trailing metadata (FLEET-Q before it sent
headers) and in the initial metadata sent early (what a 201 or 503 does now, for
grpc-gateway). One client calls each method `--calls` times in a row per round; the rounds
interleave the three so the machine's noise hits them alike. It prints each method's median
microseconds per call and the median, over rounds, of the header's cost over the trailer.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

_SERVICE = "bench.HttpCode"
_KEY = "x-http-code"


def _identity(data: bytes) -> bytes:
    return data


async def _none(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def _trailer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    context.set_trailing_metadata(((_KEY, "201"),))
    return request


async def _header(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await context.send_initial_metadata(((_KEY, "201"),))
    return request


_METHODS: dict[str, Callable[..., Any]] = {"none": _none, "trailer": _trailer, "header": _header}


async def _serve(port: Any, ready: Any) -> None:
    server = grpc.aio.server()
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=_identity, response_serializer=_identity
        )
        for name, behaviour in _METHODS.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    port.value = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ready.set()
    await server.wait_for_termination()


def _server_main(port: Any, ready: Any) -> None:
    asyncio.run(_serve(port, ready))


async def _measure(target: str, calls: int, rounds: int) -> dict[str, list[float]]:
    per_call: dict[str, list[float]] = {name: [] for name in _METHODS}
    async with grpc.aio.insecure_channel(target) as channel:
        stubs = {
            name: channel.unary_unary(
                f"/{_SERVICE}/{name}", request_serializer=_identity, response_deserializer=_identity
            )
            for name in _METHODS
        }
        for stub in stubs.values():  # warm up the connection and each path
            for _ in range(100):
                await stub(b"x")
        for round_index in range(rounds):
            order = list(stubs.items())
            if round_index % 2:
                order.reverse()
            for name, stub in order:
                started = time.perf_counter()
                for _ in range(calls):
                    await stub(b"x")
                per_call[name].append((time.perf_counter() - started) / calls * 1e6)
    return per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    options = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    port, ready = context.Value("i", 0), context.Event()
    server = context.Process(target=_server_main, args=(port, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise SystemExit("the benchmark server did not start")
        per_call = asyncio.run(_measure(f"127.0.0.1:{port.value}", options.calls, options.rounds))
    finally:
        server.terminate()
        server.join()
    medians = {name: statistics.median(values) for name, values in per_call.items()}
    for name, value in medians.items():
        print(
            f"{name:8s} median {value:7.1f} us/call  rounds: {[round(v) for v in per_call[name]]}"
        )
    paired = [h - t for h, t in zip(per_call["header"], per_call["trailer"], strict=True)]
    print(f"header - trailer: {statistics.median(paired):+.1f} us/call (median of rounds' pairs)")


if __name__ == "__main__":
    main()
