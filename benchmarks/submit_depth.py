"""Single-submit latency against the table's size (#13 item 5): it must not grow with the
finished steps a queue keeps.

    python -m benchmarks.submit_depth --rows 50000,2000000 --rounds 3

Each round seeds one fresh database per row count with completed steps (as ListSteps'
benchmark does: generate_series, then VACUUM ANALYZE), settles them all the same way, starts
one pod per database that runs no benchmark type, and times single gRPC SubmitStep calls
(call to answer, on the client's clock) to every database in the same window, in turn:
submit i goes to size i mod k, at --rate per second in all (the machine carries the load
one size alone did; each submit still finds its pod idle). A busy neighbour, a slow fsync
or a checkpoint lands on every size alike, and what is left between them is the table's
size. Each round also reports what ran in the window that could explain a tail:
checkpoints, autovacuum runs per database and the leader's VACUUMs of fleetq_steps.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from benchmarks import clients
from benchmarks.handlers import NOOP_TYPE
from benchmarks.harness import PodFleet, PostgresServer, bench_session
from benchmarks.listing import _seed
from benchmarks.report import percentiles

# Retention off: the seeded steps finished long ago, and deleting them would be what the
# submits wait behind (its run and the VACUUMs after it), not the table's size.
_POD_ENV = {"FLEETQ_LOG_LEVEL": "WARNING", "FLEETQ_RETENTION": "0"}

# Checkpoints so far, server-wide (pg_stat_checkpointer from PostgreSQL 17, before that
# pg_stat_bgwriter).
_CHECKPOINTS = {
    True: "SELECT num_timed + num_requested FROM pg_stat_checkpointer",
    False: "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter",
}
# Autovacuum's runs per table of this database (its catalogs too), and manual VACUUMs of
# fleetq_steps (the leader's vacuum loop; the seed's own is counted before the window).
_VACUUMS = """
    SELECT relname, autovacuum_count + autoanalyze_count AS auto,
           CASE WHEN relid = 'fleetq_steps'::regclass THEN vacuum_count ELSE 0 END AS manual
    FROM pg_stat_all_tables
"""


# Rows inserted into fleetq_steps as the statistics know them so far.
_INSERTED = """
    SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables WHERE relname = 'fleetq_steps'
"""


@dataclass(frozen=True)
class Activity:
    """Counters read before and after the window; their difference is what ran in it."""

    checkpoints: int
    autovacuums: tuple[Counter[str], ...]  # per database, runs by table
    leader_vacuums: tuple[int, ...]

    def since(self, before: Activity) -> Activity:
        return Activity(
            self.checkpoints - before.checkpoints,
            tuple(a - b for a, b in zip(self.autovacuums, before.autovacuums, strict=True)),
            tuple(a - b for a, b in zip(self.leader_vacuums, before.leader_vacuums, strict=True)),
        )

    def describe(self) -> str:
        """What ran, per database in size order."""
        autovacuums = [
            ", ".join(f"{table} x{n}" for table, n in sorted(runs.items())) or "none"
            for runs in self.autovacuums
        ]
        return (
            f"{self.checkpoints} checkpoints; autovacuum: {' | '.join(autovacuums)}; leader"
            f" VACUUMs {list(self.leader_vacuums)}"
        )


async def _settle(url: str, rows: int) -> None:
    """Leave a seeded database as autovacuum would find a long-settled one.

    The seed's row counts reach the statistics only when its session flushes them (at most
    once a second, or as it exits), which can be after the seed's own VACUUM: autovacuum
    then counts every seeded row as inserted since, and vacuums the table during the timed
    submits (seen at 50,000 rows). And a new database's catalogs, changed by the migrations,
    get analysed on autovacuum's first visit, up to a minute or so after CREATE DATABASE,
    which was seen during the timed window at 2,000,000 rows, whose seed takes about that
    long. Both are the fresh database, not the table's size: so wait until the statistics
    hold the seed's rows, then ANALYZE the whole database, and VACUUM it after (ANALYZE
    leaves dead pg_statistic rows that autovacuum would otherwise come back for)."""
    connection = await asyncpg.connect(url)
    try:
        for _ in range(100):
            if await connection.fetchval(_INSERTED) >= rows:
                break
            await asyncio.sleep(0.1)
        await connection.execute("ANALYZE")
        await connection.execute("VACUUM")
    finally:
        await connection.close()


async def _checkpoint(url: str) -> None:
    """Write the seeds' pages out now: 2,000,000 rows are over a gigabyte of WAL, and the
    checkpoint it triggers would otherwise run during the timed submits."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def _activity(admin_url: str, urls: list[str]) -> Activity:
    """Checkpoints so far, and autovacuum runs and fleetq_steps VACUUMs per database."""
    autos: list[Counter[str]] = []
    leaders: list[int] = []
    for url in urls:
        connection = await asyncpg.connect(url)
        try:
            rows = await connection.fetch(_VACUUMS)
            autos.append(Counter({row["relname"]: int(row["auto"]) for row in rows}))
            leaders.append(sum(int(row["manual"]) for row in rows))
        finally:
            await connection.close()
    connection = await asyncpg.connect(admin_url)
    try:
        version = int(await connection.fetchval("SHOW server_version_num"))
        checkpoints = int(await connection.fetchval(_CHECKPOINTS[version >= 170000]))
    finally:
        await connection.close()
    return Activity(checkpoints, tuple(autos), tuple(leaders))


async def submit_latencies(
    urls: list[str], log_dir: Path, rate: float, submits: int
) -> list[list[float]]:
    """Per database, milliseconds of each of `submits` single submits, the databases taking
    turns on one schedule of `rate` submits per second in all."""
    count = len(urls)
    with contextlib.ExitStack() as stack:
        pods = [stack.enter_context(PodFleet(url, log_dir)).start(1, _POD_ENV)[0] for url in urls]
        async with contextlib.AsyncExitStack() as async_stack:
            targets = [
                await async_stack.enter_async_context(clients.GrpcClients(pod.grpc_target, 1))
                for pod in pods
            ]
            latencies: list[list[float]] = [[] for _ in urls]

            async def warmup(n: int) -> None:
                await targets[n % count].submit(0, NOOP_TYPE, {"n": n})

            async def probe(n: int) -> None:
                began = time.perf_counter()
                await targets[n % count].submit(0, NOOP_TYPE, {"n": n})
                latencies[n % count].append((time.perf_counter() - began) * 1000)

            await clients.paced(50 * count, rate, warmup)
            await clients.paced(submits * count, rate, probe)
    return latencies


async def _round(
    postgres: PostgresServer, log_dir: Path, sizes: list[int], rate: float, submits: int
) -> tuple[list[tuple[float, float]], Activity]:
    """One round: every size seeded and settled, then timed together; (p50, p99) per size
    and what ran during the window."""
    async with contextlib.AsyncExitStack() as stack:
        urls = [await stack.enter_async_context(postgres.fresh_database()) for _ in sizes]
        for url, size in zip(urls, sizes, strict=True):
            with PodFleet(url, log_dir) as fleet:  # migrations, before the seed
                fleet.start(1, _POD_ENV)
            await _seed(url, size)
            await _settle(url, size)
        await _checkpoint(postgres.admin_url)
        before = await _activity(postgres.admin_url, urls)
        latencies = await submit_latencies(urls, log_dir, rate, submits)
        ran = (await _activity(postgres.admin_url, urls)).since(before)
    return [tuple(percentiles(ms, (50, 99))) for ms in latencies], ran  # type: ignore[misc]


async def run(
    sizes: list[int], rounds: int, rate: float, submits: int
) -> dict[int, list[tuple[float, float]]]:
    """Per size, each round's (p50, p99) in ms."""
    results: dict[int, list[tuple[float, float]]] = {size: [] for size in sizes}
    async with bench_session("fleetq-submit-depth") as (postgres, log_dir):
        for number in range(1, rounds + 1):
            figures, ran = await _round(postgres, log_dir, sizes, rate, submits)
            load = os.getloadavg()[0]
            for size, (p50, p99) in zip(sizes, figures, strict=True):
                results[size].append((p50, p99))
                print(f"round {number}, {size:,} rows: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
            print(f"round {number}, in the window: {ran.describe()}; load average {load:.1f}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.submit_depth", description=__doc__)
    parser.add_argument("--rows", default="50000,2000000", help="comma-separated row counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100.0, help="submits per second, all sizes")
    parser.add_argument("--submits", type=int, default=1000, help="timed submits per size")
    args = parser.parse_args()
    sizes = [int(size) for size in args.rows.split(",")]
    results = asyncio.run(run(sizes, args.rounds, args.rate, args.submits))
    for size, figures in results.items():
        p50 = statistics.median(f[0] for f in figures)
        p99 = statistics.median(f[1] for f in figures)
        print(f"{size:,} rows, median of {len(figures)}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")


if __name__ == "__main__":
    main()
