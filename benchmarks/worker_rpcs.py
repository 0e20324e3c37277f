"""The pod's Python CPU per step in the worker RPCs, without the transport: ClaimSteps
(max_steps=100) and CompleteSteps called on the servicer in process, against a real
PostgreSQL, one call at a time so each call's user CPU is its own (PostgreSQL runs in its
own process; the request's parsing and the answer's serialising are counted, as the gRPC
transport would do them).

    python -m benchmarks.worker_rpcs [--steps 20000] [--rounds 3] DATABASE_URL

DATABASE_URL is a server where a scratch database may be created (and is dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import resource
import statistics
import types
import uuid
from typing import Any

import asyncpg
from fleetq.v1 import fleetq_pb2 as pb

from fleetq_server.api.servicer import FleetQServicer
from fleetq_server.config import Settings
from fleetq_server.runtime.remote_claims import RemoteClaims
from fleetq_server.runtime.state import PodState
from fleetq_server.store import Store, open_store
from fleetq_server.submission import SubmitRequest, prepare_step

STEP_TYPE = "bench_remote"
MAX_STEPS = 100
POD_ID = "bench-pod"


def _user_cpu() -> float:
    """The process's user CPU seconds: its Python work. System time is left out: on a
    loopback socket it is mostly the kernel delivering to PostgreSQL, and it swings with
    the machine's load."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


class _Context:
    """What the worker RPCs read from a gRPC context: no deadline."""

    @staticmethod
    def time_remaining() -> float | None:
        return None


async def _load(store: Store, count: int) -> None:
    request = SubmitRequest(
        type=STEP_TYPE, args={}, metadata=None, priority=0, max_retries=3, idempotency_key=None
    )
    for start in range(0, count, 1000):
        batch = [
            prepare_step(dataclasses.replace(request, args={"n": n}))
            for n in range(start, min(start + 1000, count))
        ]
        await store.step_insert_many(batch)


async def _round(store: Store, count: int) -> tuple[float, float]:
    """Drain `count` steps; the pod's CPU microseconds per step in ClaimSteps and in
    CompleteSteps."""
    await _load(store, count)
    state = PodState(base_pod_id=POD_ID, max_capacity=8)
    state.database_ok = True
    pod: Any = types.SimpleNamespace(
        store=store,
        settings=Settings(),
        tracing=None,
        state=state,
        remote_claims=RemoteClaims(store, state, 1.0, listening=lambda: True),
    )
    servicer = FleetQServicer(pod)
    claim = pb.ClaimStepsRequest(
        worker_id="bench-worker", types=[STEP_TYPE], max_steps=MAX_STEPS, lease_seconds=60
    ).SerializeToString()
    claim_cpu = complete_cpu = 0.0
    done = 0
    while True:
        started = _user_cpu()
        answer = await servicer.ClaimSteps(pb.ClaimStepsRequest.FromString(claim), _Context())
        wire = answer.SerializeToString()
        claim_cpu += _user_cpu() - started
        steps = pb.ClaimStepsResponse.FromString(wire).steps
        if not steps:
            break
        request = pb.CompleteStepsRequest(
            completions=[pb.StepCompletion(step_id=s.step_id, attempt=s.attempt) for s in steps]
        ).SerializeToString()
        started = _user_cpu()
        outcome = await servicer.CompleteSteps(
            pb.CompleteStepsRequest.FromString(request), _Context()
        )
        outcome.SerializeToString()
        complete_cpu += _user_cpu() - started
        done += sum(o.status == "completed" for o in outcome.outcomes)
    if done != count:
        raise RuntimeError(f"{done} of {count} steps completed")
    return claim_cpu / count * 1e6, complete_cpu / count * 1e6


async def main(url: str, steps: int, rounds: int) -> None:
    name = f"fleetq_bench_rpcs_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(url)
    figures = []
    try:
        for _ in range(rounds):
            await admin.execute(f"CREATE DATABASE {name}")
            try:
                store = await open_store(url.rsplit("/", 1)[0] + f"/{name}", pool_size=4)
                try:
                    await store.pod_register(POD_ID, 8, 60.0)
                    figures.append(await _round(store, steps))
                finally:
                    await store.close()
            finally:
                await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()
    for label, values in (
        ("ClaimSteps", [claim for claim, _ in figures]),
        ("CompleteSteps", [complete for _, complete in figures]),
    ):
        median = statistics.median(values)
        each = ", ".join(f"{value:.1f}" for value in values)
        print(f"{label}: pod user CPU per step, median of {rounds}: {median:.1f} us ({each})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.steps, args.rounds))
