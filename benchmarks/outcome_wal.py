"""WAL bytes and PostgreSQL CPU per step of a drain's three statements, phase by phase.

    python -m benchmarks.outcome_wal                       # 5 rounds of 5,000 steps
    python -m benchmarks.outcome_wal --rounds 3 --steps 2000 --batch 32

One database, the store's own statements: `step_insert_many` (1,000 per call), then
`step_claim_batch` (100 per call), then `step_finish_many` (`--batch` successes per
statement), each phase run alone. For each phase: WAL bytes per step (pg_current_wal_lsn
before and after), full-page images per 1k steps (pg_stat_wal), and the CPU the database's
backends spent per 1k steps (read with psutil, so the server must run on this machine).
A CHECKPOINT starts each round, as a drain usually runs inside one checkpoint interval.

The script only calls store methods that every tree since the seed has, so it can measure
an older tree: run this file with that tree's interpreter and `PYTHONPATH`. The server is
--database-url (default FLEETQ_BENCH_DATABASE_URL), on this machine, better private and
quiet: every backend's WAL counts; pg_stat_wal needs PostgreSQL 14 or later.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

from fleetq_server.store import Store, open_store
from fleetq_server.store.records import ClaimedStep, StepOutcome
from fleetq_server.submission import SubmitRequest, new_step_ids, prepare_step

_PHASES = ("insert", "claim", "finish")


async def _backend_cpu_s(admin: asyncpg.Connection, database: str) -> float:
    """CPU seconds used so far by the backends connected to `database`."""
    pids = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    total = 0.0
    for row in pids:
        try:
            times = psutil.Process(row["pid"]).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def _measured(
    admin: asyncpg.Connection, database: str, steps: int, work: Callable[[], Awaitable[Any]]
) -> dict[str, float]:
    """Run `work`; WAL bytes per step, full-page images and backend CPU ms per 1k steps."""
    before = await admin.fetchrow(
        "SELECT pg_current_wal_insert_lsn() AS lsn, wal_fpi FROM pg_stat_wal"
    )
    cpu = await _backend_cpu_s(admin, database)
    started = time.perf_counter()
    await work()
    elapsed = time.perf_counter() - started
    cpu = await _backend_cpu_s(admin, database) - cpu
    after = await admin.fetchrow(
        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1) AS bytes, wal_fpi - $2 AS fpi"
        " FROM pg_stat_wal",
        before["lsn"],
        before["wal_fpi"],
    )
    return {
        "wal_bytes_per_step": float(after["bytes"]) / steps,
        "fpi_per_1k": float(after["fpi"]) * 1000 / steps,
        "pg_cpu_ms_per_1k": cpu * 1e6 / steps,
        "wall_ms_per_1k": elapsed * 1e6 / steps,
    }


async def _round(
    store: Store, admin: asyncpg.Connection, database: str, steps: int, batch: int
) -> dict[str, dict[str, float]]:
    request = SubmitRequest(
        type="bench_noop", args={}, metadata=None, priority=0, max_retries=0, idempotency_key=None
    )
    new = [prepare_step(request, step_id) for step_id in new_step_ids(steps)]
    claimed: list[ClaimedStep] = []

    async def insert() -> None:
        for start in range(0, steps, 1000):
            await store.step_insert_many(new[start : start + 1000])

    async def claim() -> None:
        while len(claimed) < steps:
            claimed.extend(await store.step_claim_batch("bench", ["bench_noop"], 100))

    async def finish() -> None:
        for start in range(0, steps, batch):
            await store.step_finish_many(
                [StepOutcome(s, "bench", result_json="1") for s in claimed[start : start + batch]]
            )

    await admin.execute("CHECKPOINT")
    return {
        "insert": await _measured(admin, database, steps, insert),
        "claim": await _measured(admin, database, steps, claim),
        "finish": await _measured(admin, database, steps, finish),
    }


async def main(args: argparse.Namespace) -> None:
    admin = await asyncpg.connect(args.database_url)
    database = f"fleetq_outcome_wal_{secrets.token_hex(4)}"
    await admin.execute(f"CREATE DATABASE {database}")
    try:
        store = await open_store(
            urlunsplit(urlsplit(args.database_url)._replace(path=f"/{database}")), pool_size=2
        )
        try:
            await store.pod_register("bench", args.steps)
            await _round(store, admin, database, min(args.steps, 1000), args.batch)  # warm-up
            rounds = [
                await _round(store, admin, database, args.steps, args.batch)
                for _ in range(args.rounds)
            ]
        finally:
            await store.close()
    finally:
        await admin.execute(f"DROP DATABASE {database} WITH (FORCE)")
        await admin.close()
    print(
        f"{args.rounds} rounds of {args.steps} steps; outcomes {args.batch} per statement;"
        " medians (each round's figures in brackets)"
    )
    for phase in _PHASES:
        for figure in rounds[0][phase]:
            values = [r[phase][figure] for r in rounds]
            each = ", ".join(f"{v:.0f}" for v in values)
            print(f"{phase:>7} {figure:>20}: {statistics.median(values):8.0f}  [{each}]")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.outcome_wal", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds")
    parser.add_argument("--steps", type=int, default=5000, help="steps per round")
    parser.add_argument("--batch", type=int, default=32, help="outcomes per statement")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("FLEETQ_BENCH_DATABASE_URL"),
        help="a server on this machine, with the right to create databases"
        " (default: FLEETQ_BENCH_DATABASE_URL)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
