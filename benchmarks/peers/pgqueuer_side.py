"""PgQueuer's side of `make bench-peers`, run with .venv-peers/bin/python (PgQueuer from PyPI).

It imports only PgQueuer, asyncpg and the standard library, never FLEET-Q, and uses
PgQueuer as its documentation shows: `Queries.enqueue` (lists for a bulk insert) on an
asyncpg connection, or on an asyncpg pool for concurrent producers, and a `QueueManager`
with an entrypoint, its `run()` left at its defaults. Every command prints one JSON
object on stdout:

    python pgqueuer_side.py drain --dsn URL --jobs 20000 --workers 2   {"steps_per_s": ...}
    python pgqueuer_side.py bulk --dsn URL --calls 20 --size 1000     {"steps_per_s": ...}
    python pgqueuer_side.py singles --dsn URL --jobs 20000 --concurrency 32
    python pgqueuer_side.py latency --dsn URL --count 500 --rate 100  {"p50_ms": ..., ...}

`worker` is what `drain` and `latency` start, one process per worker.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
from pgqueuer import AsyncpgDriver, AsyncpgPoolDriver, Queries, QueueManager
from pgqueuer.models import Job
from pgqueuer.types import QueueExecutionMode

ENTRYPOINT = "bench_noop"
LOAD_CHUNK = 1000
LATENCY_WARMUP = 20


def _payload(n: int) -> bytes:
    return json.dumps({"n": n}).encode()


async def _install(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await Queries(AsyncpgDriver(connection)).install()
    finally:
        await connection.close()


async def _load(dsn: str, jobs: int) -> None:
    """`jobs` no-op jobs, enqueued in lists of LOAD_CHUNK."""
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))
        for start in range(0, jobs, LOAD_CHUNK):
            numbers = range(start, min(jobs, start + LOAD_CHUNK))
            await queries.enqueue(
                [ENTRYPOINT] * len(numbers), [_payload(n) for n in numbers], [0] * len(numbers)
            )
    finally:
        await connection.close()


async def worker(dsn: str, count: int) -> dict[str, object]:
    """One consumer process: a QueueManager with one entrypoint, `run()` at its defaults.
    With `count` 0 it runs in drain mode (exits once the queue is empty), else until it
    has finished `count` jobs. Reports its first handler start and last handler end
    (time.time()), and for payloads carrying "sent" each job's start minus "sent"."""
    connection = await asyncpg.connect(dsn)
    manager = QueueManager(Queries(AsyncpgDriver(connection)))
    seen = {"finished": 0, "first": 0.0, "last": 0.0}
    delays_ms: list[float] = []

    @manager.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        now = time.time()
        seen["first"] = seen["first"] or now
        if job.payload and b"sent" in job.payload:
            delays_ms.append((now - json.loads(job.payload)["sent"]) * 1000)
        seen["finished"] += 1
        seen["last"] = time.time()
        if seen["finished"] == count:
            manager.shutdown.set()

    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # "go": every worker starts at once
    try:
        await manager.run(
            mode=QueueExecutionMode.drain if count == 0 else QueueExecutionMode.continuous
        )
    finally:
        await connection.close()
    return {"first": seen["first"], "last": seen["last"], "delays_ms": delays_ms}


class Workers:
    """Worker processes of this script, started and told to go together."""

    def __init__(self, dsn: str, count: int, jobs: int) -> None:
        script = str(Path(__file__).resolve())
        self._argv = [sys.executable, script, "worker", "--dsn", dsn, "--count", str(jobs)]
        self._count = count
        self._processes: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        """Start every worker and wait until each is connected."""
        for _ in range(self._count):
            process = await asyncio.create_subprocess_exec(
                *self._argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
            )
            self._processes.append(process)
        for process in self._processes:
            assert process.stdout is not None
            line = await process.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError(f"a PgQueuer worker did not start: {line!r}")

    def go(self) -> None:
        """Let every worker start dequeuing."""
        for process in self._processes:
            assert process.stdin is not None
            process.stdin.write(b"go\n")

    async def results(self, within: float) -> list[dict[str, Any]]:
        """Each worker's report once it has exited."""
        reports = []
        async with asyncio.timeout(within):
            for process in self._processes:
                output, _ = await process.communicate()
                if process.returncode != 0:
                    raise RuntimeError(f"a PgQueuer worker failed ({process.returncode})")
                reports.append(json.loads(output.decode().splitlines()[-1]))
        return reports

    def kill(self) -> None:
        """Stop workers still running (after a failure)."""
        for process in self._processes:
            if process.returncode is None:
                process.kill()


async def drain(dsn: str, jobs: int, workers: int) -> dict[str, float]:
    """Load `jobs` no-op jobs, then let `workers` worker processes (drain mode) empty the
    queue together: jobs / (last handler end - first handler start) over all workers."""
    await _install(dsn)
    await _load(dsn, jobs)
    team = Workers(dsn, workers, 0)
    try:
        await team.start()
        team.go()
        reports = await team.results(within=60 + jobs / 200)
    finally:
        team.kill()
    first = min(report["first"] for report in reports)
    last = max(report["last"] for report in reports)
    return {"steps_per_s": jobs / (last - first)}


async def bulk(dsn: str, calls: int, size: int) -> dict[str, float]:
    """`calls` list enqueues of `size` jobs from one coroutine on one connection; the
    payloads are built inside the clock, as FLEET-Q's client builds its steps."""
    await _install(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))
        # Unmeasured, as on FLEET-Q's side: one call of the measured size.
        warmup = range(calls * size, (calls + 1) * size)
        await queries.enqueue([ENTRYPOINT] * size, [_payload(n) for n in warmup], [0] * size)
        started = time.perf_counter()
        for call in range(calls):
            numbers = range(call * size, (call + 1) * size)
            await queries.enqueue([ENTRYPOINT] * size, [_payload(n) for n in numbers], [0] * size)
        elapsed = time.perf_counter() - started
    finally:
        await connection.close()
    return {"steps_per_s": calls * size / elapsed}


async def singles(dsn: str, jobs: int, concurrency: int) -> dict[str, float]:
    """`jobs` single enqueues from `concurrency` coroutines sharing an asyncpg pool (its
    default size), nothing consuming."""
    await _install(dsn)
    pool = await asyncpg.create_pool(dsn)
    try:
        queries = Queries(AsyncpgPoolDriver(pool))
        numbers = itertools.count()

        async def producer(total: int) -> None:
            while (n := next(numbers)) < total:
                await queries.enqueue(ENTRYPOINT, _payload(n))

        await asyncio.gather(*(producer(concurrency) for _ in range(concurrency)))  # warm-up
        numbers = itertools.count()
        started = time.perf_counter()
        await asyncio.gather(*(producer(jobs) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    return {"steps_per_s": jobs / elapsed}


async def latency(dsn: str, count: int, rate: float) -> dict[str, float]:
    """Enqueue at `rate`/s from this process to one idle worker process; each job's
    handler start minus the time.time() its enqueue began, p50 and p99."""
    await _install(dsn)
    total = LATENCY_WARMUP + count
    team = Workers(dsn, 1, total)
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))
        await team.start()
        team.go()
        await asyncio.sleep(0.5)  # the worker is in its wait for notifications
        loop = asyncio.get_running_loop()
        began = loop.time()
        for n in range(total):
            delay = began + n / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            # One connection serves one enqueue at a time: at 100/s each is long done.
            body = {"sent": time.time()} if n >= LATENCY_WARMUP else {"n": n}
            await queries.enqueue(ENTRYPOINT, json.dumps(body).encode())
        (report,) = await team.results(within=60)
    finally:
        team.kill()
        await connection.close()
    cuts = statistics.quantiles(report["delays_ms"], n=100, method="inclusive")
    return {"p50_ms": cuts[49], "p99_ms": cuts[98]}


def main() -> None:
    """Parse the command, run it, print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("drain", "bulk", "singles", "latency", "worker"):
        command = commands.add_parser(name)
        command.add_argument("--dsn", required=True)
    commands.choices["drain"].add_argument("--jobs", type=int, default=20_000)
    commands.choices["drain"].add_argument("--workers", type=int, default=1)
    commands.choices["bulk"].add_argument("--calls", type=int, default=20)
    commands.choices["bulk"].add_argument("--size", type=int, default=1000)
    commands.choices["singles"].add_argument("--jobs", type=int, default=20_000)
    commands.choices["singles"].add_argument("--concurrency", type=int, default=32)
    commands.choices["latency"].add_argument("--count", type=int, default=500)
    commands.choices["latency"].add_argument("--rate", type=float, default=100.0)
    commands.choices["worker"].add_argument("--count", type=int, default=0)
    args = parser.parse_args()
    runs = {
        "drain": lambda: drain(args.dsn, args.jobs, args.workers),
        "bulk": lambda: bulk(args.dsn, args.calls, args.size),
        "singles": lambda: singles(args.dsn, args.jobs, args.concurrency),
        "latency": lambda: latency(args.dsn, args.count, args.rate),
        "worker": lambda: worker(args.dsn, args.count),
    }
    print(json.dumps(asyncio.run(runs[args.command]())), flush=True)


if __name__ == "__main__":
    main()
