"""The cost of a large backlog (#13 item 5): seconds per bucket of completions.

    python -m benchmarks.backlog --steps 200000 --bucket 20000

One pod loads the backlog with SubmitBatch (it runs no benchmark type); one pod, frozen
while it loads, then drains it at `--max-parallelism` with retention off. Each bucket's
seconds run from the previous bucket's last finish (the first: the first claim) to its own
last finish, all from the database clock. A queue whose cost does not grow with the work
shows a flat series. PostgreSQL is a private embedded server (autovacuum on) unless
FLEETQ_BENCH_DATABASE_URL is set, as for `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio

import asyncpg

from benchmarks import clients
from benchmarks.handlers import NOOP_TYPE
from benchmarks.harness import PodFleet, bench_session, frozen
from benchmarks.scenarios import LOAD_BATCH

# Retention off: finished steps stay, as in the measurement.
_POD_ENV = {"FLEETQ_LOG_LEVEL": "WARNING", "FLEETQ_RETENTION": "0"}


async def _drained(connection: asyncpg.Connection, steps: int) -> None:
    while True:  # the database holds the answer: poll it
        query = "SELECT count(*) FROM fleetq_steps WHERE status = 'completed'"
        if await connection.fetchval(query) >= steps:
            return
        await asyncio.sleep(1.0)


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


async def run(steps: int, bucket: int, max_parallelism: int) -> list[float]:
    env = {
        **_POD_ENV,
        "FLEETQ_HANDLERS": "benchmarks.handlers",
        "FLEETQ_MAX_PARALLELISM": str(max_parallelism),
        "FLEETQ_CAPACITY_THRESHOLD": "1",
    }
    sizes = [min(LOAD_BATCH, steps - n) for n in range(0, steps, LOAD_BATCH)]
    async with (
        bench_session("fleetq-backlog") as (postgres, log_dir),
        postgres.fresh_database() as url,
    ):
        connection = await asyncpg.connect(url)
        try:
            with PodFleet(url, log_dir) as fleet:
                (loader,) = fleet.start(1, _POD_ENV)
                workers = fleet.start(1, env)
                with frozen(workers):
                    requests = [clients.batch_request(NOOP_TYPE, size) for size in sizes]
                    async with clients.GrpcClients(loader.grpc_target, 1) as grpc_clients:
                        await clients.submit_batches(grpc_clients, requests, 1)
                    fleet.stop(loader)
                await _drained(connection, steps)
            return await bucket_seconds(connection, bucket)
        finally:
            await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backlog", description=__doc__)
    parser.add_argument("--steps", type=int, default=1_000_000, help="backlog size")
    parser.add_argument("--bucket", type=int, default=100_000, help="completions per bucket")
    parser.add_argument("--max-parallelism", type=int, default=100, help="of the draining pod")
    args = parser.parse_args()
    series = asyncio.run(run(args.steps, args.bucket, args.max_parallelism))
    total = sum(series)
    print(f"{args.steps} steps drained in {total:.1f} s ({args.steps / total:,.0f} steps/s)")
    for number, seconds in enumerate(series, start=1):
        print(f"bucket {number}: {seconds:.2f} s ({args.bucket / seconds:,.0f} steps/s)")


if __name__ == "__main__":
    main()
