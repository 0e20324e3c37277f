"""One repetition of each benchmark scenario, each on a fresh database with its own pods.

Every scenario returns flat figures named `<scenario>_<measure>`; `report.py` knows them.
Throughputs and latencies come from the database clock or the client's clock as noted
at each scenario; nothing is read from a pod's own account of itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import psutil

from benchmarks import clients
from benchmarks.handlers import NOOP_TYPE, PROBE_TYPE
from benchmarks.harness import PodFleet, PostgresServer, find_pgbench, frozen, libpq_environment
from benchmarks.report import percentiles
from benchmarks.resources import CpuMeter, RssSampler, sample_rss_peak_mb
from tests.hostile.bodies import capped_body, nested_lists_body
from tests.support.server_process import ServerProcess
from tests.support.topologies import PgBouncer, scratch_dir

# Steps per SubmitBatch call when pre-loading a drain (the RPC's maximum).
LOAD_BATCH = 1000
# Steps the latency scenario submits first, unmeasured, to warm up both ends.
LATENCY_WARMUP = 20
# The REST latency client's pool: HTTP/1.1 carries one call at a time per connection.
LATENCY_REST_CONNECTIONS = 16
# The latency scenario's legs, each reported at p50: client call to the insert's
# transaction start, insert to the claim statement's start, claim to handler start.
LATENCY_LEGS = ("to_insert", "to_claim", "to_start")
# How long an idle pod is watched for its resident memory.
IDLE_SAMPLE_S = 1.0
POLL_S = 0.05
DRAIN_POLL_S = 0.5
_JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class Options:
    """Sizes and pod settings for every scenario (the CLI's flags)."""

    drain_steps: int
    # Steps loaded, then drained, by the backlog scenario (benchmarks/backlog.py).
    backlog_steps: int
    # Finished steps seeded before ListSteps pages are timed.
    list_steps: int
    submit_steps: int
    clients: int
    batch_size: int
    batches: int
    batch_callers: int
    latency_submits: int
    latency_rate: float
    max_parallelism: int
    capacity_threshold: float
    pgbench_seconds: int
    # Pod settings of the recovery scenario: empty means FLEET-Q's defaults.
    recovery_env: dict[str, str]
    recovery_hold_s: float
    # Load generators: C tools on PATH ("wrk", "h2load") let the pod saturate first;
    # Python clients ("httpx", "grpcio") saturate their own core first.
    rest_client: str
    grpc_client: str


@dataclass(frozen=True)
class Bench:
    """What every scenario shares."""

    postgres: PostgresServer
    options: Options
    log_dir: Path
    postmaster: psutil.Process | None


Figures = dict[str, float]


def pod_env(options: Options, *, run_steps: bool) -> dict[str, str]:
    """Pod settings. Without `run_steps` the pod runs no benchmark step type, so steps
    submitted to it stay pending: submit benchmarks then measure submitting alone."""
    env = {
        "FLEETQ_LOG_LEVEL": "WARNING",
        "FLEETQ_MAX_PARALLELISM": str(options.max_parallelism),
        "FLEETQ_CAPACITY_THRESHOLD": str(options.capacity_threshold),
    }
    if run_steps:
        env["FLEETQ_HANDLERS"] = "benchmarks.handlers"
    return env


# Migration 0013's per-minute throughput upsert made a no-op, everything else unchanged: the
# side-by-side of what the ring costs (benchmarks.finish_cost times the statement alone).
THROUGHPUT_RING_OFF = """
CREATE OR REPLACE FUNCTION fleetq_throughput_add(completed_n bigint, failed_n bigint)
RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$
"""


@contextlib.asynccontextmanager
async def _scenario(bench: Bench) -> AsyncIterator[tuple[asyncpg.Connection, PodFleet]]:
    """A fresh database, a connection to it, and a fleet that is stopped on the way out."""
    async with bench.postgres.fresh_database() as url:
        connection = await asyncpg.connect(url)
        try:
            with PodFleet(url, bench.log_dir) as fleet:
                yield connection, fleet
        finally:
            await connection.close()


async def _wait_for(
    connection: asyncpg.Connection,
    query: str,
    *args: Any,
    within: float,
    what: str,
    every: float = POLL_S,
) -> None:
    """Poll `query` (a boolean) every `every` seconds until it is true."""
    try:
        async with asyncio.timeout(within):
            while True:  # the database holds the answer: poll it
                if await connection.fetchval(query, *args):
                    return
                await asyncio.sleep(every)
    except TimeoutError:
        raise TimeoutError(f"timed out after {within:g}s waiting for {what}") from None


async def _wait_drained(connection: asyncpg.Connection, within: float) -> None:
    """Until no step is pending or claimed. The check scans the table (2.4-4.8 ms of
    PostgreSQL CPU at 20,000 steps; the planner keeps the scan whatever the query's
    shape), so it runs every DRAIN_POLL_S, not POLL_S: every 50 ms it was 41-114 ms of the
    CPU per 1,000 steps charged to a capacity-8 drain. A later look does not move a
    drain's rate, which is read from the steps' own timestamps."""
    await _wait_for(
        connection,
        "SELECT NOT EXISTS (SELECT 1 FROM fleetq_steps WHERE status IN ('pending', 'claimed'))",
        within=within,
        what="the queue to drain",
        every=DRAIN_POLL_S,
    )


async def _stored(connection: asyncpg.Connection) -> int:
    return int(await connection.fetchval("SELECT count(*) FROM fleetq_steps"))


async def _count_steps(connection: asyncpg.Connection, acknowledged: int) -> None:
    """Check that the pods stored at least the steps the clients were told were stored
    (wrk is stopped with requests still in flight, so more is fine)."""
    stored = await _stored(connection)
    if stored < acknowledged:
        raise RuntimeError(f"{stored} steps stored, {acknowledged} acknowledged")


def _batch_sizes(total: int, size: int) -> list[int]:
    return [min(size, total - start) for start in range(0, total, size)]


async def drain(
    bench: Bench,
    pods: int,
    *,
    pgbouncer: bool = False,
    watch_trigger: bool = True,
    throughput_ring: bool = True,
) -> Figures:
    """Drain N pre-submitted no-op steps with `pods` pods: N / (last finish - first claim),
    both from the database clock. Also the pods' idle and peak RSS and their CPU use.

    The steps are loaded with SubmitBatch through a pod that runs no benchmark type while
    the draining pods, already started and idle, are frozen; all of them thaw at once.
    With `pgbouncer` the draining pods reach the database through PgBouncer in transaction
    mode (LISTEN still direct), as README "Production database" describes. Without
    `watch_trigger`, the trigger that notifies watched steps' changes is disabled: the
    side-by-side figure of what it costs a drain nobody watches. Without `throughput_ring`,
    the per-minute throughput upsert is a no-op (THROUGHPUT_RING_OFF): what it costs.
    """
    name = f"drain_{pods}pod" + ("_pgbouncer" if pgbouncer else "")
    name += "" if watch_trigger else "_no_watch_trigger"
    name += "" if throughput_ring else "_no_throughput_ring"
    with contextlib.ExitStack() as stack:
        return await _drain(bench, pods, name, stack, pgbouncer, watch_trigger, throughput_ring)


async def _drain(
    bench: Bench,
    pods: int,
    name: str,
    stack: contextlib.ExitStack,
    pgbouncer: bool,
    watch_trigger: bool,
    throughput_ring: bool,
) -> Figures:
    options = bench.options
    async with _scenario(bench) as (connection, fleet):
        env = pod_env(options, run_steps=True)
        if pgbouncer:
            base = scratch_dir("fleetq-bench-pgbouncer-")
            stack.callback(shutil.rmtree, base, ignore_errors=True)
            bouncer = stack.enter_context(PgBouncer(fleet.database_url, base))
            env |= {
                "FLEETQ_DATABASE_URL": bouncer.url(urlsplit(fleet.database_url).path[1:]),
                "FLEETQ_DATABASE_POOLER": "pgbouncer",
                "FLEETQ_LISTEN_DATABASE_URL": fleet.database_url,
            }
        (loader,) = fleet.start(1, pod_env(options, run_steps=False))
        workers = fleet.start(pods, env)
        if not watch_trigger:  # migrations have run: the pods are up
            await connection.execute(
                "ALTER TABLE fleetq_steps DISABLE TRIGGER fleetq_watched_steps_update"
            )
        if not throughput_ring:
            await connection.execute(THROUGHPUT_RING_OFF)
        pids = [worker.pid for worker in workers]
        idle_mb = await asyncio.to_thread(sample_rss_peak_mb, pids, IDLE_SAMPLE_S)
        meter = CpuMeter(pids, bench.postmaster, client=False)
        with RssSampler(pids) as memory:
            with frozen(workers):
                requests = [
                    clients.batch_request(NOOP_TYPE, size)
                    for size in _batch_sizes(options.drain_steps, LOAD_BATCH)
                ]
                async with clients.GrpcClients(loader.grpc_target, 1) as loader_client:
                    await clients.submit_batches(loader_client, requests, 1)
                fleet.stop(loader)
                meter.start()
            await _wait_drained(connection, within=60 + options.drain_steps / 200)
            row = await completed_span(connection)
            # CPU over the drain itself: the pods idle before their first claim and after.
            cpu = meter.stop(busy=row["seconds"])
    if row["completed"] != options.drain_steps:
        raise RuntimeError(f"{row['completed']} of {options.drain_steps} steps completed")
    return {
        f"{name}_rss_idle_mb": idle_mb,
        f"{name}_rss_peak_mb": memory.peak_mb,
        **rate_figures(name, options.drain_steps / row["seconds"], cpu),
    }


def rate_figures(name: str, steps_per_s: float, cpu: dict[str, float]) -> Figures:
    """The rate, each role's CPU cores, and its CPU milliseconds per 1,000 steps (cores
    over the same interval divided by the rate): what a step costs, whatever the rate."""
    figures = {f"{name}_steps_per_s": steps_per_s}
    for role, cores in cpu.items():
        figures[f"{name}_cpu_{role}"] = cores
        figures[f"{name}_cpu_{role}_ms_per_1k"] = cores / steps_per_s * 1_000_000
    return figures


async def completed_span(connection: asyncpg.Connection) -> asyncpg.Record:
    """Completed steps, and the seconds from the first claim to the last finish (both
    from the database clock): a drain's rate."""
    row = await connection.fetchrow(
        """
        SELECT count(*) AS completed,
               extract(epoch FROM max(finished_ts) - min(claimed_ts))::float8 AS seconds
        FROM fleetq_steps WHERE status = 'completed'
        """
    )
    assert row is not None  # an aggregate always returns a row
    return row


async def submit(bench: Bench, name: str, client: str) -> Figures:
    """N single submits from C concurrent clients: N / elapsed on the client's clock, and
    each role's CPU use meanwhile, as figures `<name>_...`. `client` is the load generator:
    "h2load", "grpcio" or "fleetq" (one AsyncFleetQClient; gRPC), "wrk", "httpx" or "aiohttp"
    (REST)."""
    options = bench.options
    async with _scenario(bench) as (connection, fleet), contextlib.AsyncExitStack() as stack:
        (pod,) = fleet.start(1, pod_env(options, run_steps=False))
        if client == "wrk":

            async def load(total: int) -> float:
                before = await _stored(connection)

                async def stored_since() -> int:
                    return await _stored(connection) - before

                return await clients.wrk_submits(
                    pod.http_url, NOOP_TYPE, options.clients, total, stored_since
                )

        elif client == "h2load":

            async def load(total: int) -> float:
                before = await _stored(connection)
                elapsed = await clients.h2load_submits(
                    pod.grpc_target, NOOP_TYPE, options.clients, total
                )
                # h2load cannot see gRPC statuses: every call must have stored its step.
                if (stored := await _stored(connection) - before) != total:
                    raise RuntimeError(f"h2load made {total} calls; {stored} steps stored")
                return elapsed

        else:
            submitter: (
                clients.GrpcClients
                | clients.RestClients
                | clients.AiohttpRestClients
                | clients.FleetQClient
            )
            if client == "grpcio":
                submitter = clients.GrpcClients(pod.grpc_target, options.clients)
            elif client == "fleetq":  # the shipped client, shared by every coroutine
                submitter = clients.FleetQClient(pod.grpc_target)
            elif client == "aiohttp":
                submitter = clients.AiohttpRestClients(pod.http_url, options.clients)
            else:
                submitter = clients.RestClients(pod.http_url, options.clients)
            await stack.enter_async_context(submitter)

            async def load(total: int) -> float:
                return await clients.submit_singles(submitter, NOOP_TYPE, total, options.clients)

        await load(options.clients)  # unmeasured: first calls pay for lazy set-up
        meter = CpuMeter([pod.pid], bench.postmaster)
        meter.start()
        elapsed = await load(options.submit_steps)
        cpu = meter.stop()
        await _count_steps(connection, options.submit_steps + options.clients)
    return rate_figures(name, options.submit_steps / elapsed, cpu)


async def submit_batch(bench: Bench) -> Figures:
    """B SubmitBatch calls of S steps from a few concurrent gRPC callers: B*S / elapsed.
    The requests are built before the clock starts."""
    options = bench.options
    name = "submit_batch"
    requests = [clients.batch_request(NOOP_TYPE, options.batch_size)] * options.batches
    async with _scenario(bench) as (connection, fleet):
        (pod,) = fleet.start(1, pod_env(options, run_steps=False))
        async with clients.GrpcClients(pod.grpc_target, options.batch_callers) as callers:
            warmup = [clients.batch_request(NOOP_TYPE, 10)] * options.batch_callers
            await clients.submit_batches(callers, warmup, options.batch_callers)
            meter = CpuMeter([pod.pid], bench.postmaster)
            meter.start()
            elapsed = await clients.submit_batches(callers, requests, options.batch_callers)
            cpu = meter.stop()
        total = options.batches * options.batch_size
        await _count_steps(connection, total + 10 * options.batch_callers)
    return rate_figures(name, total / elapsed, cpu)


async def submit_bulk(bench: Bench, calls: int, size: int) -> Figures:
    """`calls` bulk calls of `size` steps, one after another from one coroutine, through
    the shipped AsyncFleetQClient (its `submit_many`, else `submit_batch`): calls*size /
    elapsed, building the steps inside the clock as an application would. A client with
    neither call gets SubmitBatch requests built by the benchmark's stub instead."""
    options = bench.options
    name = "submit_bulk"
    async with _scenario(bench) as (connection, fleet):
        (pod,) = fleet.start(1, pod_env(options, run_steps=False))
        async with (
            clients.FleetQClient(pod.grpc_target) as client,
            clients.GrpcClients(pod.grpc_target, 1) as stub,
        ):

            async def bulk(first: int, count: int) -> None:
                if client.bulk_call is None:
                    await stub.submit_batch(0, clients.batch_request(NOOP_TYPE, count))
                    return
                numbers = range(first, first + count)
                await client.submit_bulk([{"type": NOOP_TYPE, "args": {"n": n}} for n in numbers])

            # Unmeasured: the first call of the measured size pays for lazy set-up (a
            # 10-step call missed the COPY path, whose first use cost 10-40 ms more).
            await bulk(calls * size, size)
            meter = CpuMeter([pod.pid], bench.postmaster)
            meter.start()
            started = time.perf_counter()
            for call in range(calls):
                await bulk(call * size, size)
            elapsed = time.perf_counter() - started
            cpu = meter.stop()
        await _count_steps(connection, (calls + 1) * size)
    return rate_figures(name, calls * size / elapsed, cpu)


async def latency(bench: Bench, protocol: str) -> Figures:
    """Submits at a steady rate to an idle pod, one client: the probe handler's start time
    minus the client's time.time() as the submit call began, per step."""
    options = bench.options
    name = f"latency_{protocol}"
    async with _scenario(bench) as (connection, fleet):
        (pod,) = fleet.start(1, pod_env(options, run_steps=True))
        # One client. gRPC multiplexes its calls on one channel; HTTP/1.1 needs a pool of
        # connections, or calls would queue behind each other in the client.
        client: clients.GrpcClients | clients.RestClients | clients.FleetQClient
        if protocol == "grpc":
            client = clients.GrpcClients(pod.grpc_target, 1)
        elif protocol == "fleetq":  # gRPC through the shipped AsyncFleetQClient
            client = clients.FleetQClient(pod.grpc_target)
        else:
            client = clients.RestClients(pod.http_url, 1, connections=LATENCY_REST_CONNECTIONS)

        async def warmup(n: int) -> None:
            await client.submit(0, NOOP_TYPE, {"n": n})

        async def probe(_: int) -> None:
            await client.submit(0, PROBE_TYPE, {"sent": time.time()})

        async with client:
            await clients.paced(LATENCY_WARMUP, options.latency_rate, warmup)
            await clients.paced(options.latency_submits, options.latency_rate, probe)
        await _wait_drained(connection, within=60)
        # Where the time goes, each leg's p50: the client's call to the insert's
        # transaction start (created_ts), to the claim's (claimed_ts), to the handler.
        rows = await connection.fetch(
            """
            SELECT (result->>'started')::float8 - (args->>'sent')::float8 AS seconds,
                   extract(epoch FROM created_ts) - (args->>'sent')::float8 AS to_insert,
                   extract(epoch FROM claimed_ts - created_ts)::float8 AS to_claim,
                   (result->>'started')::float8 - extract(epoch FROM claimed_ts) AS to_start
            FROM fleetq_steps WHERE type = $1 AND status = 'completed'
            """,
            PROBE_TYPE,
        )
    if len(rows) != options.latency_submits:
        raise RuntimeError(f"{len(rows)} of {options.latency_submits} probes completed")
    p50, p95, p99 = percentiles([row["seconds"] * 1000 for row in rows], (50, 95, 99))
    legs = {
        f"{name}_{leg}_p50_ms": percentiles([float(row[leg]) * 1000 for row in rows], (50,))[0]
        for leg in LATENCY_LEGS
    }
    return {f"{name}_p50_ms": p50, f"{name}_p95_ms": p95, f"{name}_p99_ms": p99, **legs}


async def _pod_ids(pods: list[ServerProcess]) -> dict[str, ServerProcess]:
    async with httpx.AsyncClient(timeout=10) as http:
        answers = [(await http.get(f"{pod.http_url}/health")).json() for pod in pods]
    return {answer["pod_id"]: pod for answer, pod in zip(answers, pods, strict=True)}


async def recovery(bench: Bench) -> Figures:
    """Two pods fill their capacity with sleeping steps; the follower is killed with
    SIGKILL; seconds (client clock) until the leader has requeued every step the dead pod
    held, and until they have all completed again (including the handler's sleep)."""
    options = bench.options
    async with _scenario(bench) as (connection, fleet):
        env = {"FLEETQ_LOG_LEVEL": "WARNING", **options.recovery_env}
        pods = await _pod_ids(fleet.start(2, env))
        leader_id, victim_id = [
            row["pod_id"]
            for row in await connection.fetch(
                "SELECT pod_id FROM fleetq_pods WHERE status = 'up' ORDER BY birth_ts, pod_id"
            )
        ]
        capacity = await connection.fetchval("SELECT sum(max_capacity) FROM fleetq_pods")
        async with clients.GrpcClients(pods[leader_id].grpc_target, 1) as client:
            for n in range(capacity):
                await client.submit(0, "sleep", {"seconds": options.recovery_hold_s, "n": n})
        await _wait_for(
            connection,
            "SELECT count(*) = $1 FROM fleetq_steps WHERE status = 'claimed'",
            capacity,
            within=30,
            what="both pods to fill their capacity",
        )
        killed = time.monotonic()
        pods[victim_id].kill()
        orphans = [
            row["step_id"]
            for row in await connection.fetch(
                "SELECT step_id FROM fleetq_steps WHERE status = 'claimed' AND claimed_by = $1",
                victim_id,
            )
        ]
        if not orphans:
            raise RuntimeError("the killed pod held no steps (its sleeps ended too soon)")
        patience = 120.0
        await _wait_for(
            connection,
            """SELECT NOT EXISTS (SELECT 1 FROM fleetq_steps WHERE step_id = ANY($1)
                                  AND status = 'claimed' AND claimed_by = $2)""",
            orphans,
            victim_id,
            within=patience,
            what="the dead pod's steps to be requeued",
        )
        requeued = time.monotonic()
        await _wait_for(
            connection,
            """SELECT count(*) = cardinality($1::text[]) FROM fleetq_steps
               WHERE step_id = ANY($1) AND status = 'completed'""",
            orphans,
            within=patience,
            what="the requeued steps to complete",
        )
        completed = time.monotonic()
    return {
        "recovery_requeue_s": requeued - killed,
        "recovery_complete_s": completed - killed,
        "recovery_orphans": float(len(orphans)),
    }


_TPS = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)


async def _run(argv: list[str], env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({process.returncode}):\n{text}")
    return text


async def ceiling(bench: Bench) -> Figures:
    """`pgbench -N -c 8 -j 2 -T <s>` in its own database on the same server: the rate of
    small write transactions the database itself sustains, without FLEET-Q."""
    pgbench = find_pgbench()
    if pgbench is None:
        return {}
    async with bench.postgres.fresh_database() as url:
        env = {**os.environ, **libpq_environment(url)}
        await _run([pgbench, "-i", "-q"], env)
        seconds = str(bench.options.pgbench_seconds)
        output = await _run([pgbench, "-N", "-c", "8", "-j", "2", "-T", seconds], env)
    match = _TPS.search(output)
    if match is None:
        raise RuntimeError(f"no tps in pgbench's output:\n{output}")
    return {"pgbench_tps": float(match.group(1))}


# The hostile scenario: clients sending the costliest 1 MiB bodies, and the /health prober.
HOSTILE_CLIENTS = 4
HOSTILE_SECONDS = 10.0
HOSTILE_BURST = 20
HOSTILE_BODY_BYTES = (1 << 20) - 64
DEFAULT_MAX_JSON_VALUES = 10_000


def _hostile_sender(url: str, bodies: list[bytes], stop: threading.Event) -> int:
    """Send `bodies` in turn until `stop`; returns how many were answered."""
    sent = 0
    with httpx.Client(base_url=url, timeout=120) as http:
        while not stop.is_set():
            http.post("/submit", content=bodies[sent % len(bodies)], headers=_JSON_HEADERS)
            sent += 1
    return sent


def _probe_health(url: str, stop: threading.Event) -> list[float]:
    """GET /health back to back until `stop`; the latencies in ms."""
    latencies = []
    with httpx.Client(base_url=url, timeout=60) as http:
        while not stop.is_set():
            began = time.perf_counter()
            http.get("/health").raise_for_status()
            latencies.append((time.perf_counter() - began) * 1000)
    return latencies


async def hostile(bench: Bench) -> Figures:
    """/health latency (client clock) while 4 clients send the costliest 1 MiB bodies: a
    megabyte of lists nested 29 deep (refused by the value count) and the most nesting
    the default cap accepts padded with a string to a megabyte (stored). Then the pod's
    RSS growth (peak minus before) while 20 such accepted bodies are submitted at once."""
    bodies = [
        nested_lists_body(HOSTILE_BODY_BYTES),
        capped_body(HOSTILE_BODY_BYTES, DEFAULT_MAX_JSON_VALUES),
    ]
    async with _scenario(bench) as (_, fleet):
        (pod,) = fleet.start(1, pod_env(bench.options, run_steps=False))
        stop = threading.Event()
        senders = [
            asyncio.to_thread(
                _hostile_sender, pod.http_url, bodies[i % 2 :] + bodies[: i % 2], stop
            )
            for i in range(HOSTILE_CLIENTS)
        ]
        probe = asyncio.create_task(asyncio.to_thread(_probe_health, pod.http_url, stop))
        running = asyncio.gather(*senders)
        await asyncio.sleep(HOSTILE_SECONDS)
        stop.set()
        answered = sum(await running)
        latencies = await probe
        before_mb = await asyncio.to_thread(sample_rss_peak_mb, [pod.pid], IDLE_SAMPLE_S)
        with RssSampler([pod.pid]) as memory:
            await asyncio.gather(
                *(
                    asyncio.to_thread(_hostile_sender_once, pod.http_url, bodies[1])
                    for _ in range(HOSTILE_BURST)
                )
            )
    (p50, p99) = percentiles(latencies, (50, 99))
    return {
        "hostile_health_p50_ms": p50,
        "hostile_health_p99_ms": p99,
        "hostile_bodies_answered": float(answered),
        "hostile_rss_growth_mb": memory.peak_mb - before_mb,
    }


def _hostile_sender_once(url: str, body: bytes) -> None:
    response = httpx.post(f"{url}/submit", content=body, headers=_JSON_HEADERS, timeout=120)
    if response.status_code != 201:
        raise RuntimeError(f"POST /submit answered {response.status_code}: {response.text}")
