"""WatchStep's cost: a pod holding many idle streams, and the drain without the trigger
that notifies watched steps' changes (the side-by-side of `drain, 1 pod`)."""

from __future__ import annotations

import asyncio

import grpc
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from benchmarks import clients, scenarios
from benchmarks.handlers import NOOP_TYPE
from benchmarks.resources import CpuMeter

# Streams held open, and how long their pod's CPU is measured (twice: without, then with).
IDLE_WATCHERS = 1000
IDLE_MEASURE_S = 10.0
STREAMS_PER_CHANNEL = 100


async def pod_cores(bench: scenarios.Bench, pid: int) -> dict[str, float]:
    meter = CpuMeter([pid], bench.postmaster, client=False)
    meter.start()
    await asyncio.sleep(IDLE_MEASURE_S)  # measuring an idle span: there is nothing to await
    return meter.stop()


async def idle_watchers(bench: scenarios.Bench) -> scenarios.Figures:
    """IDLE_WATCHERS WatchStep streams open on one pod, one per pending step, while no
    step changes: the pod's and PostgreSQL's CPU over IDLE_MEASURE_S, beside the same pod
    idle with no stream. What the streams cost is the hub's periodic re-read of every
    watched step (one query per FLEETQ_POLL_INTERVAL) and keeping the streams open."""
    async with scenarios._scenario(bench) as (_connection, fleet):
        (pod,) = fleet.start(1, scenarios.pod_env(bench.options, run_steps=False))
        # The pod takes FLEETQ_GRPC_MAX_STREAMS (100) calls per connection: a connection
        # per hundred streams, as that many clients would have.
        channels = [
            grpc.aio.insecure_channel(pod.grpc_target, options=clients.GRPC_OPTIONS)
            for _ in range(-(-IDLE_WATCHERS // STREAMS_PER_CHANNEL))
        ]
        try:
            stubs = [fleetq_pb2_grpc.FleetQServiceStub(channel) for channel in channels]
            batch = await stubs[0].SubmitBatch(clients.batch_request(NOOP_TYPE, IDLE_WATCHERS))
            alone = await pod_cores(bench, pod.pid)
            streams = [
                stubs[n // STREAMS_PER_CHANNEL].WatchStep(pb.WatchStepRequest(step_id=s.step_id))
                for n, s in enumerate(batch.steps)
            ]
            await asyncio.gather(*(stream.read() for stream in streams))  # each one's first state
            watched = await pod_cores(bench, pod.pid)
            for stream in streams:
                stream.cancel()
        finally:
            await asyncio.gather(*(channel.close() for channel in channels))
    return {
        "watch_idle_none_cpu_pods": alone["pods"],
        "watch_idle_cpu_pods": watched["pods"],
        "watch_idle_cpu_postgres": watched.get("postgres", 0.0),
    }
