"""ListSteps' page cost at depth: millions of finished steps, pages read over gRPC from the
newest to the oldest (the issue's bound: 20 ms a page at any depth with 10 million)."""

from __future__ import annotations

import statistics
import time

import asyncpg
import grpc
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from benchmarks import clients, scenarios
from fleetq_server.api.step_listing import encode_token
from fleetq_server.store.records import StepListPosition

# Pages read at each depth, and the depths, as fractions of the table (newest first; the
# last is the deepest full page with a page after it).
CALLS_PER_DEPTH = 20
DEPTHS = (0.0, 0.001, 0.5, 1.0)
PAGE_SIZE = 50
# Step types the seeded steps are spread over (for the filtered walk).
SEED_TYPES = 20

# Steps of the same shape FLEET-Q writes, finished one millisecond apart. With triggers
# off (session_replication_role, the benchmark's own server being a superuser's) the
# seed skips the finished-counts trigger, which only statistics read.
_SEED = """
    INSERT INTO fleetq_steps (step_id, status, type, args, metadata, idempotency_key,
        payload_hash, created_ts, last_update_ts, not_before_ts, claimed_ts, finished_ts,
        claimed_by, attempt, result)
    SELECT 'step_20260101000000_' || lpad(to_hex(g), 16, '0'), 'completed',
           'seeded_' || (g % $2), '{"n": 1}', '{}', 'idem_seeded_' || g, 'seeded',
           ts, ts, ts, ts, ts, 'seed-pod', 1, '1'
    FROM generate_series(1, $1) AS g,
         LATERAL (SELECT timestamptz '2026-01-01' + g * interval '1 millisecond' AS ts) AS t
"""


async def _seed(url: str, steps: int) -> float:
    connection = await asyncpg.connect(url)
    try:
        began = time.monotonic()
        await connection.execute("SET session_replication_role = replica")
        await connection.execute(_SEED, steps, SEED_TYPES)
        await connection.execute("VACUUM ANALYZE fleetq_steps")
        return time.monotonic() - began
    finally:
        await connection.close()


async def _token_at(url: str, depth: int) -> str:
    """The page token whose page starts `depth` steps from the newest."""
    if depth == 0:
        return ""
    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow(
            "SELECT created_ts, step_id FROM fleetq_steps"
            " ORDER BY created_ts DESC, step_id DESC OFFSET $1 LIMIT 1",
            depth - 1,
        )
    finally:
        await connection.close()
    assert row is not None
    return encode_token(StepListPosition(row["created_ts"], row["step_id"]))


async def _page_ms(stub: fleetq_pb2_grpc.FleetQServiceStub, request: pb.ListStepsRequest) -> float:
    began = time.perf_counter()
    page = await stub.ListSteps(request)
    elapsed = (time.perf_counter() - began) * 1000
    # A page filtered by type near the oldest end may be short; an unfiltered one is full.
    if not page.steps or (not request.type and len(page.steps) != request.page_size):
        raise RuntimeError(f"a page of {len(page.steps)} steps at {request.page_token!r}")
    return elapsed


async def list_pages(bench: scenarios.Bench) -> scenarios.Figures:
    """Seed N finished steps, then read CALLS_PER_DEPTH pages of PAGE_SIZE at each of
    DEPTHS, unfiltered and filtered by type, timing each ListSteps call at the client."""
    steps = bench.options.list_steps
    async with scenarios._scenario(bench) as (_connection, fleet):
        (pod,) = fleet.start(1, scenarios.pod_env(bench.options, run_steps=False))
        url = fleet.database_url
        seed_s = await _seed(url, steps)
        deepest = steps - PAGE_SIZE - 1
        tokens = {d: await _token_at(url, min(int(d * steps), deepest)) for d in DEPTHS}
        by_depth: dict[float, list[float]] = {}
        filtered: list[float] = []
        async with grpc.aio.insecure_channel(pod.grpc_target, options=clients.GRPC_OPTIONS) as ch:
            stub = fleetq_pb2_grpc.FleetQServiceStub(ch)
            for depth, token in tokens.items():
                request = pb.ListStepsRequest(page_size=PAGE_SIZE, page_token=token)
                await _page_ms(stub, request)  # warm the pod's connection and the cache
                by_depth[depth] = [await _page_ms(stub, request) for _ in range(CALLS_PER_DEPTH)]
                typed = pb.ListStepsRequest(page_size=PAGE_SIZE, page_token=token, type="seeded_7")
                filtered += [await _page_ms(stub, typed) for _ in range(CALLS_PER_DEPTH)]
    every = [ms for calls in by_depth.values() for ms in calls]
    return {
        "list_seed_s": seed_s,
        "list_first_page_ms": statistics.median(by_depth[DEPTHS[0]]),
        "list_deepest_page_ms": statistics.median(by_depth[DEPTHS[-1]]),
        "list_page_max_ms": max(every),
        "list_typed_page_median_ms": statistics.median(filtered),
        "list_typed_page_max_ms": max(filtered),
    }
