"""CPU per coalesced submit spent in AsyncFleetQClient alone: C coroutines submitting
through one client whose gRPC calls are answered in process with canned responses (every
step accepted), no channel, no pod, no database.

The end-to-end row of `make bench-peers` mixes the client with grpc, the pod and
PostgreSQL, and on a loaded machine moves with everyone else's work; this isolates what the
client's own changes cost. It uses only the client's public calls and its `_send` seam,
which every tree with the coalescer has, so it runs against an older checkout too:

    cd /path/to/other/tree && .venv/bin/python /path/to/benchmarks/client_cpu.py

Prints CPU microseconds per submit (time.process_time) for each round, and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from fleetq.v1 import fleetq_pb2 as pb

from fleetq_client import AsyncFleetQClient

STEP_TYPE = "bench.noop"


def _accepted(count: int) -> bytes:
    """A SubmitBatchResponse accepting `count` steps, as a pod sends it."""
    response = pb.SubmitBatchResponse()
    for n in range(count):
        step_id = f"step_20240101000000_{n:016x}"
        accepted = response.steps.add(
            step_id=step_id, status="submitted", message=f"Step {step_id} submitted successfully"
        )
        response.items.add(accepted=accepted)
    return response.SerializeToString()


async def _round(coroutines: int, submits: int) -> float:
    """CPU microseconds per submit of `coroutines` x `submits` submits."""
    client = AsyncFleetQClient("127.0.0.1:1")  # never connects: _send is replaced
    answers: dict[int, bytes] = {}

    async def send(call: Any) -> Any:
        request = call.request
        request.SerializeToString()  # what grpc would do with it
        await asyncio.sleep(0)  # the call's round trip: later submits queue meanwhile
        if isinstance(request, pb.SubmitStepRequest):
            return call.read(pb.SubmitStepResponse(step_id="step_x", status="submitted"))
        count = len(request.steps)
        data = answers.setdefault(count, _accepted(count))
        return call.read(pb.SubmitBatchResponse.FromString(data))

    client._send = send  # type: ignore[method-assign]

    async def caller() -> None:
        for n in range(submits):
            await client.submit(STEP_TYPE, {"n": n})

    started = time.process_time()
    await asyncio.gather(*(caller() for _ in range(coroutines)))
    used = time.process_time() - started
    await client.close()
    return used / (coroutines * submits) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coroutines", type=int, default=32)
    parser.add_argument("--submits", type=int, default=3000, help="per coroutine")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures = []
    for number in range(1, args.rounds + 1):
        figures.append(asyncio.run(_round(args.coroutines, args.submits)))
        print(f"round {number}: {figures[-1]:.2f} us of CPU per submit")
    print(f"median: {statistics.median(figures):.2f} us of CPU per submit")


if __name__ == "__main__":
    main()
