"""The cost of a large backlog (#13 item 5): the drain's rate bucket by bucket.

    python -m benchmarks.backlog --steps 1000000     # ten buckets of 100,000
    python -m benchmarks.run --scenarios backlog     # the same inside `make bench`

One pod loads the backlog with SubmitBatch (it runs no benchmark type); one pod, frozen
while it loads, then drains it at `--max-parallelism` with retention off. Each bucket's
seconds run from the previous bucket's last finish (the first: the first claim) to its own
last finish, all from the database clock. A queue whose cost does not grow with the work
shows a flat series: the report's `slowest bucket / first` is 1.0 then. PostgreSQL is a
private embedded server (autovacuum on, its defaults) unless FLEETQ_BENCH_DATABASE_URL is
set, as for `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Mapping
from pathlib import Path

import asyncpg
import psutil

from benchmarks import clients
from benchmarks.handlers import NOOP_TYPE
from benchmarks.harness import PodFleet, PostgresServer, bench_session, frozen
from benchmarks.resources import CpuMeter
from benchmarks.scenarios import Bench

# The drain is cut into this many buckets of equal size, whatever the backlog.
BUCKETS = 10
# Steps per SubmitBatch while loading.
LOAD_BATCH = 1000
# How often the drain's progress and CPU are read: buckets of --quick's 2,000 steps take
# under a second on a quiet machine.
POLL_S = 0.2
# Retention off: finished steps stay, as in the measurement.
_POD_ENV = {"FLEETQ_LOG_LEVEL": "WARNING", "FLEETQ_RETENTION": "0"}


async def _completed(connection: asyncpg.Connection) -> int:
    """Completed steps, from the trigger-maintained counts: counting the rows themselves
    would scan the whole table every poll, and load the machine being measured."""
    query = "SELECT COALESCE(sum(n), 0) FROM fleetq_finished_step_counts WHERE status = 'completed'"
    return int(await connection.fetchval(query))


async def _drained(
    connection: asyncpg.Connection, steps: int, meter: CpuMeter
) -> list[tuple[int, dict[str, float]]]:
    """Wait for `steps` completions; every poll's (completions, CPU seconds by role)."""
    samples = []
    while True:  # the database holds the answer: poll it
        done = await _completed(connection)
        samples.append((done, meter.used()))
        if done >= steps:
            return samples
        await asyncio.sleep(POLL_S)


def bucket_cpu(samples: list[tuple[int, dict[str, float]]], bucket: int) -> list[dict[str, float]]:
    """CPU ms per 1,000 steps by role, bucket by bucket (to a poll's resolution): less
    sensitive to a loaded machine than the buckets' seconds."""
    costs = []
    previous_done, previous_used = 0, dict.fromkeys(samples[0][1], 0.0)
    for number in range(1, BUCKETS + 1):
        done, used = next(s for s in samples if s[0] >= min(number * bucket, samples[-1][0]))
        steps = max(done - previous_done, 1)
        costs.append({role: (used[role] - previous_used[role]) / steps * 1e6 for role in used})
        previous_done, previous_used = done, used
    return costs


async def vacuum_figures(connection: asyncpg.Connection) -> dict[str, float]:
    """VACUUMs of fleetq_steps so far, the leader's and autovacuum's, and the seconds they
    took where the server says (PostgreSQL 18+: total_vacuum_time, in ms)."""
    row = await connection.fetchrow(
        "SELECT to_jsonb(s) AS s FROM pg_stat_user_tables AS s"
        " WHERE relid = 'fleetq_steps'::regclass"
    )
    stats = json.loads(row["s"])
    figures = {
        "backlog_vacuums": float(stats["vacuum_count"]),
        "backlog_autovacuums": float(stats["autovacuum_count"]),
    }
    if "total_vacuum_time" in stats:
        figures["backlog_vacuum_s"] = stats["total_vacuum_time"] / 1000
        figures["backlog_autovacuum_s"] = stats["total_autovacuum_time"] / 1000
    return figures


async def bucket_seconds(connection: asyncpg.Connection, bucket: int) -> list[float]:
    """Seconds each `bucket` completions took, in finishing order."""
    rows = await connection.fetch(
        """
        SELECT (n - 1) / $1 AS bucket, max(finished_ts) AS last
        FROM (SELECT finished_ts, row_number() OVER (ORDER BY finished_ts) AS n
              FROM fleetq_steps WHERE status = 'completed') AS done
        GROUP BY 1 ORDER BY 1
        """,
        bucket,
    )
    start = await connection.fetchval("SELECT min(claimed_ts) FROM fleetq_steps")
    seconds = []
    for row in rows:
        seconds.append((row["last"] - start).total_seconds())
        start = row["last"]
    return seconds


async def drain_backlog(
    postgres: PostgresServer,
    log_dir: Path,
    postmaster: psutil.Process | None,
    steps: int,
    max_parallelism: int,
    pod_env: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """Load `steps` no-op steps, drain them with one pod; the figures `backlog_...`: the
    whole drain's rate and CPU, each bucket's rate, and the slowest bucket over the first."""
    env = {
        **_POD_ENV,
        "FLEETQ_HANDLERS": "benchmarks.handlers",
        "FLEETQ_MAX_PARALLELISM": str(max_parallelism),
        "FLEETQ_CAPACITY_THRESHOLD": "1",
        **(pod_env or {}),
    }
    sizes = [min(LOAD_BATCH, steps - n) for n in range(0, steps, LOAD_BATCH)]
    async with postgres.fresh_database() as url:
        connection = await asyncpg.connect(url)
        try:
            with PodFleet(url, log_dir) as fleet:
                (loader,) = fleet.start(1, {**_POD_ENV, **(pod_env or {})})
                workers = fleet.start(1, env)
                meter = CpuMeter([w.pid for w in workers], postmaster, client=False)
                with frozen(workers):
                    requests = [clients.batch_request(NOOP_TYPE, size) for size in sizes]
                    async with clients.GrpcClients(loader.grpc_target, 1) as grpc_clients:
                        await clients.submit_batches(grpc_clients, requests, 1)
                    fleet.stop(loader)
                    meter.start()
                samples = await _drained(connection, steps, meter)
                series = await bucket_seconds(connection, max(1, steps // BUCKETS))
                cpu = meter.stop(busy=sum(series))
                vacuums = await vacuum_figures(connection)
        finally:
            await connection.close()
    total = sum(series)
    figures = {"backlog_steps_per_s": steps / total}
    for role, cores in cpu.items():
        figures[f"backlog_cpu_{role}"] = cores
        figures[f"backlog_cpu_{role}_ms_per_1k"] = cores * total / steps * 1_000_000
    bucket = steps // BUCKETS
    for number, seconds in enumerate(series[:BUCKETS], start=1):
        figures[f"backlog_bucket_{number}_steps_per_s"] = bucket / seconds
    figures["backlog_slowest_bucket_ratio"] = max(series[:BUCKETS]) / series[0]
    costs = bucket_cpu(samples, bucket)
    for number, cost in enumerate(costs, start=1):
        for role, ms in cost.items():
            figures[f"backlog_bucket_{number}_cpu_{role}_ms_per_1k"] = ms
    totals = [sum(cost.values()) for cost in costs]
    figures["backlog_costliest_bucket_ratio"] = max(totals) / totals[0]
    return figures | vacuums


async def scenario(bench: Bench) -> dict[str, float]:
    """`make bench`'s backlog scenario: `drain_backlog` of the options' backlog size."""
    options = bench.options
    return await drain_backlog(
        bench.postgres,
        bench.log_dir,
        bench.postmaster,
        options.backlog_steps,
        options.max_parallelism,
    )


def _pod_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        env[key] = value
    return env


async def _main(args: argparse.Namespace) -> dict[str, float]:
    async with bench_session("fleetq-backlog") as (postgres, log_dir):
        return await drain_backlog(
            postgres,
            log_dir,
            await postgres.postmaster(),
            args.steps,
            args.max_parallelism,
            _pod_env(args.pod_env),
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backlog", description=__doc__)
    parser.add_argument("--steps", type=int, default=1_000_000, help="backlog size")
    parser.add_argument("--max-parallelism", type=int, default=100, help="of the draining pod")
    parser.add_argument(
        "--pod-env", action="append", default=[], help="KEY=VALUE for both pods (repeatable)"
    )
    args = parser.parse_args()
    figures = asyncio.run(_main(args))
    bucket = args.steps // BUCKETS
    print(f"{args.steps} steps drained at {figures['backlog_steps_per_s']:,.0f} steps/s")
    for role in ("pods", "postgres"):
        if f"backlog_cpu_{role}" in figures:
            print(f"CPU ms / 1,000 steps, {role}: {figures[f'backlog_cpu_{role}_ms_per_1k']:,.0f}")
    for number in range(1, BUCKETS + 1):
        rate = figures[f"backlog_bucket_{number}_steps_per_s"]
        cpu = ", ".join(
            f"{role} {figures[f'backlog_bucket_{number}_cpu_{role}_ms_per_1k']:.0f}"
            for role in ("pods", "postgres")
            if f"backlog_bucket_{number}_cpu_{role}_ms_per_1k" in figures
        )
        print(f"bucket {number}: {bucket / rate:.2f} s ({rate:,.0f} steps/s; CPU ms/1k: {cpu})")
    print(f"slowest bucket / first: {figures['backlog_slowest_bucket_ratio']:.2f}")
    print(f"costliest bucket / first, CPU: {figures['backlog_costliest_bucket_ratio']:.2f}")
    vacuums = ("vacuums", "vacuum_s", "autovacuums", "autovacuum_s")
    print(
        ", ".join(
            f"{key} {figures[f'backlog_{key}']:.1f}"
            for key in vacuums
            if f"backlog_{key}" in figures
        )
    )


if __name__ == "__main__":
    main()
