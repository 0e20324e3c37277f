"""CPU per REST request spent in the gateway alone: the ASGI app driven in process, with a
stub SubmitStep/SubmitBatch handler, no HTTP server, no database.

The end-to-end figure (wrk against a pod, benchmarks/wrk_submit.lua) mixes the gateway
with uvicorn, asyncpg and the group commit, and moves with the load and the batch sizes
the load produces; this isolates what the gateway's own changes cost. It imports only what
every tree since 03f7149 has, so it runs against an older checkout too:

    cd /path/to/other/tree && .venv/bin/python /path/to/benchmarks/gateway_cpu.py

Prints CPU microseconds per request (time.process_time) for each body, each round, and
the median of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import statistics
import time
from typing import Any

import grpc
from fleetq.v1 import fleetq_pb2 as pb

from fleetq_server.gateway import Gateway

SERVICE = pb.DESCRIPTOR.services_by_name["FleetQService"]
SUBMIT_BODY = {"type": "bench.noop", "args": {"n": 1, "s": "abc"}, "metadata": {"k": "v"}}


async def _submit_step(request: pb.SubmitStepRequest, context: Any) -> pb.SubmitStepResponse:
    return pb.SubmitStepResponse(step_id="step_20240101000000_0123456789abcdef")


async def _submit_batch(request: pb.SubmitBatchRequest, context: Any) -> pb.SubmitBatchResponse:
    response = pb.SubmitBatchResponse()
    for _ in request.steps:
        response.steps.add(step_id="step_20240101000000_0123456789abcdef")
    return response


def _gateway() -> Gateway:
    stubs = {"SubmitStep": _submit_step, "SubmitBatch": _submit_batch}
    handlers = {
        f"/{SERVICE.full_name}/{method.name}": grpc.unary_unary_rpc_method_handler(
            stubs.get(method.name, _submit_step)
        )
        for method in SERVICE.methods
    }
    wanted = {"max_json_values": 10_100, "max_body_bytes_in_flight": 16 << 20}
    accepted = inspect.signature(Gateway).parameters
    return Gateway(SERVICE, handlers, **{k: v for k, v in wanted.items() if k in accepted})


async def _run(app: Gateway, path: str, body: bytes, requests: int) -> float:
    """CPU seconds for `requests` sequential POSTs of `body`."""
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
    }
    sent: list[Any] = []
    never = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    started = time.process_time()
    for _ in range(requests):
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await never.wait()
            return {"type": "http.disconnect"}

        await app(dict(scope), receive, send)
    elapsed = time.process_time() - started
    assert sent[0]["status"] == 200, sent[:2]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-steps", type=int, default=100)
    options = parser.parse_args()
    batch = {
        "steps": [{"type": "bench.noop", "args": {"n": n}} for n in range(options.batch_steps)]
    }
    cases = [
        ("POST /submit", "/submit", json.dumps(SUBMIT_BODY).encode(), options.requests, 1),
        (
            f"POST /submit/batch ({options.batch_steps} steps), per step",
            "/submit/batch",
            json.dumps(batch).encode(),
            max(1, options.requests // options.batch_steps),
            options.batch_steps,
        ),
    ]
    app = _gateway()
    for label, path, body, requests, per in cases:
        rounds = [
            asyncio.run(_run(app, path, body, requests)) / requests / per * 1e6
            for _ in range(options.rounds)
        ]
        shown = " ".join(f"{value:.1f}" for value in rounds)
        print(f"{label}: CPU us {shown}; median {statistics.median(rounds):.1f}")


if __name__ == "__main__":
    main()
