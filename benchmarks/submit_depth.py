"""Single-submit latency against the table's size (#13 item 5): it must not grow with the
finished steps a queue keeps.

    python -m benchmarks.submit_depth --rows 50000,2000000 --rounds 3

Each round seeds a fresh database with each row count of completed steps in turn (as
ListSteps' benchmark does: generate_series, then VACUUM ANALYZE), starts one pod that runs
no benchmark type, and times single gRPC SubmitStep calls at a modest steady rate from one
client (call to answer, on the client's clock). Rounds interleave the sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import asyncpg

from benchmarks import clients
from benchmarks.handlers import NOOP_TYPE
from benchmarks.harness import PodFleet, bench_session
from benchmarks.listing import _seed
from benchmarks.report import percentiles

# Retention off: the seeded steps finished long ago, and deleting them would be what the
# submits wait behind (its run and the VACUUMs after it), not the table's size.
_POD_ENV = {"FLEETQ_LOG_LEVEL": "WARNING", "FLEETQ_RETENTION": "0"}


async def submit_latencies(url: str, log_dir: Path, rate: float, submits: int) -> list[float]:
    """Milliseconds of each of `submits` single submits at `rate` per second."""
    with PodFleet(url, log_dir) as fleet:
        (pod,) = fleet.start(1, _POD_ENV)
        latencies: list[float] = []
        async with clients.GrpcClients(pod.grpc_target, 1) as client:

            async def warmup(n: int) -> None:
                await client.submit(0, NOOP_TYPE, {"n": n})

            async def probe(n: int) -> None:
                began = time.perf_counter()
                await client.submit(0, NOOP_TYPE, {"n": n})
                latencies.append((time.perf_counter() - began) * 1000)

            await clients.paced(50, rate, warmup)
            await clients.paced(submits, rate, probe)
    return latencies


async def _checkpoint(url: str) -> None:
    """Write the seed's pages out now: 2,000,000 rows are over a gigabyte of WAL, and the
    checkpoint it triggers would otherwise run during the timed submits."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def run(
    sizes: list[int], rounds: int, rate: float, submits: int
) -> dict[int, list[tuple[float, float]]]:
    """Per size, each round's (p50, p99) in ms."""
    results: dict[int, list[tuple[float, float]]] = {size: [] for size in sizes}
    async with bench_session("fleetq-submit-depth") as (postgres, log_dir):
        for number in range(1, rounds + 1):
            for size in sizes:
                async with postgres.fresh_database() as url:
                    with PodFleet(url, log_dir) as fleet:  # migrations, before the seed
                        fleet.start(1, _POD_ENV)
                    await _seed(url, size)
                    await _checkpoint(url)
                    latencies = await submit_latencies(url, log_dir, rate, submits)
                p50, p99 = percentiles(latencies, (50, 99))
                results[size].append((p50, p99))
                print(f"round {number}, {size:,} rows: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.submit_depth", description=__doc__)
    parser.add_argument("--rows", default="50000,2000000", help="comma-separated row counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100.0, help="submits per second")
    parser.add_argument("--submits", type=int, default=1000, help="timed submits per run")
    args = parser.parse_args()
    sizes = [int(size) for size in args.rows.split(",")]
    results = asyncio.run(run(sizes, args.rounds, args.rate, args.submits))
    for size, figures in results.items():
        p50 = statistics.median(f[0] for f in figures)
        p99 = statistics.median(f[1] for f in figures)
        print(f"{size:,} rows, median of {len(figures)}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")


if __name__ == "__main__":
    main()
