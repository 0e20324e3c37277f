"""A benchmark worker process: `python -m benchmarks.remote_worker TARGET TYPE LOOPS`.

LOOPS concurrent loops on one gRPC channel, each leasing up to 100 steps with ClaimSteps
and completing them with one CompleteSteps, the next claim already in flight meanwhile (as
a high-throughput worker would), until a claim that waited a second for work found none
(the queue is drained). What a worker in another language would do, minus
the work itself: the benchmark measures the queue's side.
"""

from __future__ import annotations

import asyncio
import sys

import grpc
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

MAX_STEPS = 100
LEASE_S = 60.0


async def _loop(stub: fleetq_pb2_grpc.FleetQServiceStub, worker_id: str, step_type: str) -> int:
    """Claim and complete until the queue is drained, pipelined: the next ClaimSteps is
    in flight while the previous batch's CompleteSteps is, so neither the pod nor the
    worker waits out a round trip between them."""
    done = 0
    request = pb.ClaimStepsRequest(
        worker_id=worker_id,
        types=[step_type],
        max_steps=MAX_STEPS,
        wait_seconds=1.0,
        lease_seconds=LEASE_S,
    )
    claim = stub.ClaimSteps(request, timeout=30)  # a grpc.aio call starts when made
    while True:
        steps = (await claim).steps
        if not steps:
            return done
        claim = stub.ClaimSteps(request, timeout=30)
        completions = [pb.StepCompletion(step_id=s.step_id, attempt=s.attempt) for s in steps]
        answer = await stub.CompleteSteps(pb.CompleteStepsRequest(completions=completions))
        done += sum(outcome.status == "completed" for outcome in answer.outcomes)


async def main(target: str, step_type: str, loops: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
        worker_id = f"bench-{target}-{id(stub)}"
        counts = await asyncio.gather(*(_loop(stub, worker_id, step_type) for _ in range(loops)))
    print(sum(counts))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
