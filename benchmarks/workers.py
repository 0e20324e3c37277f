"""Remote workers' cost: a drain by worker processes using ClaimSteps(max_steps=100) and
CompleteSteps (beside the in-pod drain), idle long polls held open on one pod, and single
submits made while those polls wait."""

from __future__ import annotations

import asyncio
import sys
import time

import grpc
import httpx
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from benchmarks import clients, scenarios
from benchmarks.handlers import NOOP_TYPE
from benchmarks.resources import CpuMeter
from benchmarks.watch import STREAMS_PER_CHANNEL, pod_cores

WORKER_PROCESSES = 2
# Concurrent claim-complete loops per worker process: one claims while another completes.
LOOPS_PER_WORKER = 4
IDLE_LONG_POLLS = 500
LOAD_BATCH = 1000
# Single submits made one at a time while IDLE_LONG_POLLS polls wait for their type.
SINGLE_SUBMITS = 200


async def remote_drain(bench: scenarios.Bench, pods: int) -> scenarios.Figures:
    """Drain N pre-submitted steps with WORKER_PROCESSES worker processes (one per pod in
    turn) leasing 100 at a time and completing them with one CompleteSteps: N / (last
    finish - first claim), both from the database clock. The pods run no step type, so
    only the workers drain."""
    options = bench.options
    name = f"remote_drain_{pods}pod"
    async with scenarios._scenario(bench) as (connection, fleet):
        serving = fleet.start(pods, scenarios.pod_env(options, run_steps=False))
        requests = [
            clients.batch_request(NOOP_TYPE, min(LOAD_BATCH, options.drain_steps - start))
            for start in range(0, options.drain_steps, LOAD_BATCH)
        ]
        async with clients.GrpcClients(serving[0].grpc_target, 1) as loader:
            await clients.submit_batches(loader, requests, 1)
        meter = CpuMeter([pod.pid for pod in serving], bench.postmaster, client=False)
        meter.start()
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks.remote_worker",
                serving[n % pods].grpc_target,
                NOOP_TYPE,
                str(LOOPS_PER_WORKER),
                stdout=asyncio.subprocess.PIPE,
            )
            for n in range(WORKER_PROCESSES)
        ]
        outputs = [await worker.communicate() for worker in workers]
        row = await scenarios.completed_span(connection)
        cpu = meter.stop(busy=row["seconds"])
    reported = sum(int(out.decode().strip() or 0) for out, _ in outputs)
    if row["completed"] != options.drain_steps or reported != options.drain_steps:
        raise RuntimeError(
            f"{row['completed']} of {options.drain_steps} steps completed ({reported} reported)"
        )
    return scenarios.rate_figures(name, options.drain_steps / row["seconds"], cpu)


async def _long_polls_waiting(url: str, count: int) -> None:
    """Until the pod's fleetq_claim_long_polls gauge reads `count`."""
    wanted = f"fleetq_claim_long_polls {count:.1f}"
    async with httpx.AsyncClient(base_url=url) as client, asyncio.timeout(60):
        while True:  # the pod's gauge holds the answer: poll it
            if wanted in (await client.get("/metrics")).text:
                return
            await asyncio.sleep(scenarios.POLL_S)


async def _poll_forever(
    stub: fleetq_pb2_grpc.FleetQServiceStub,
    request: pb.ClaimStepsRequest,
    received: list[int],
    got_one: asyncio.Event,
) -> None:
    """One worker's long poll, made again as soon as it answers; counts steps received."""
    while True:
        steps = (await stub.ClaimSteps(request, timeout=60)).steps
        if steps:
            received[0] += len(steps)
            got_one.set()


async def long_polls_single_submits(bench: scenarios.Bench) -> scenarios.Figures:
    """IDLE_LONG_POLLS ClaimSteps long polls (max_steps=100) waiting for one type on one
    pod, then SINGLE_SUBMITS single submits of it, each made once the previous one was
    handed to a poll: the pod's and PostgreSQL's CPU milliseconds per submit. What a
    submit costs beyond its insert is the waiters it wakes: each runs a claim statement."""
    async with scenarios._scenario(bench) as (_connection, fleet):
        (pod,) = fleet.start(1, scenarios.pod_env(bench.options, run_steps=False))
        channels = [
            grpc.aio.insecure_channel(pod.grpc_target, options=clients.GRPC_OPTIONS)
            for _ in range(-(-IDLE_LONG_POLLS // STREAMS_PER_CHANNEL) + 1)
        ]
        stubs = [fleetq_pb2_grpc.FleetQServiceStub(channel) for channel in channels]
        request = pb.ClaimStepsRequest(
            worker_id="waiting", types=[NOOP_TYPE], max_steps=100, wait_seconds=30
        )
        received, got_one = [0], asyncio.Event()
        polls = [
            asyncio.create_task(
                _poll_forever(stubs[n // STREAMS_PER_CHANNEL], request, received, got_one)
            )
            for n in range(IDLE_LONG_POLLS)
        ]
        try:
            await _long_polls_waiting(pod.http_url, IDLE_LONG_POLLS)
            submitter = stubs[-1]  # a channel of its own
            meter = CpuMeter([pod.pid], bench.postmaster, client=False)
            meter.start()
            started = time.perf_counter()
            for n in range(SINGLE_SUBMITS):
                got_one.clear()
                await submitter.SubmitStep(clients.step_request(NOOP_TYPE, {"n": n}))
                async with asyncio.timeout(60):
                    while received[0] <= n:  # handed to a poll: the next submit may go
                        await got_one.wait()
                        got_one.clear()
            cores = meter.stop()
            seconds = time.perf_counter() - started
        finally:
            for poll in polls:
                poll.cancel()
            await asyncio.gather(*polls, return_exceptions=True)
            await asyncio.gather(*(channel.close() for channel in channels))
    per_submit_ms = seconds / SINGLE_SUBMITS * 1000
    return {
        "long_polls_submits_pod_ms": cores["pods"] * per_submit_ms,
        "long_polls_submits_postgres_ms": cores.get("postgres", 0.0) * per_submit_ms,
    }


async def idle_long_polls(bench: scenarios.Bench) -> scenarios.Figures:
    """IDLE_LONG_POLLS ClaimSteps calls waiting (30 s each) on one pod while nothing is
    submitted: the pod's and PostgreSQL's CPU over the measured span, beside the same pod
    with none. Waiting costs no query: only a submit NOTIFY wakes a long poll."""
    async with scenarios._scenario(bench) as (_connection, fleet):
        (pod,) = fleet.start(1, scenarios.pod_env(bench.options, run_steps=False))
        channels = [
            grpc.aio.insecure_channel(pod.grpc_target, options=clients.GRPC_OPTIONS)
            for _ in range(-(-IDLE_LONG_POLLS // STREAMS_PER_CHANNEL))
        ]
        try:
            alone = await pod_cores(bench, pod.pid)
            stubs = [fleetq_pb2_grpc.FleetQServiceStub(channel) for channel in channels]
            request = pb.ClaimStepsRequest(worker_id="idle", types=["idle_type"], wait_seconds=30)
            polls = [
                stubs[n // STREAMS_PER_CHANNEL].ClaimSteps(request, timeout=60)
                for n in range(IDLE_LONG_POLLS)
            ]
            await _long_polls_waiting(pod.http_url, IDLE_LONG_POLLS)
            waiting = await pod_cores(bench, pod.pid)
            for poll in polls:
                poll.cancel()
        finally:
            await asyncio.gather(*(channel.close() for channel in channels))
    return {
        "long_polls_idle_none_cpu_pods": alone["pods"],
        "long_polls_idle_cpu_pods": waiting["pods"],
        "long_polls_idle_cpu_postgres": waiting.get("postgres", 0.0),
    }
