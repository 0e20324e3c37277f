"""`make bench`: run every scenario N times and write the report (benchmarks/results/).

    python -m benchmarks.run              # the full run: issue #6 sizes, 3 repetitions
    python -m benchmarks.run --quick      # a smoke run: small sizes, 1 repetition

PostgreSQL is a private embedded server unless FLEETQ_BENCH_DATABASE_URL is set; each
scenario run gets a fresh database and its own pods, all stopped before the next.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import backlog, environment, listing, report, scenarios, watch, workers
from benchmarks.harness import bench_session, find_pgbench

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Issue #6's sizes, and the smoke run's.
FULL = {
    "repetitions": 3,
    "drain_steps": 20_000,
    "backlog_steps": 1_000_000,
    "list_steps": 10_000_000,
    "submit_steps": 20_000,
    "batches": 50,
    "latency_submits": 500,
    "pgbench_seconds": 15,
}
QUICK = {
    "repetitions": 1,
    "drain_steps": 2_000,
    "backlog_steps": 20_000,
    "list_steps": 100_000,
    "submit_steps": 2_000,
    "batches": 5,
    "latency_submits": 100,
    "pgbench_seconds": 3,
}
# The smoke run shortens recovery ten-fold; the full run keeps FLEET-Q's defaults.
QUICK_RECOVERY_ENV = {
    "FLEETQ_HEARTBEAT_INTERVAL": "0.5",
    "FLEETQ_DEAD_POD_THRESHOLD": "1.5",
    "FLEETQ_RECOVERY_INTERVAL": "0.5",
}
_GRPCIO_CLIENT = "grpc.aio in one asyncio process, one channel (TCP connection) per client"
SCENARIO_NAMES = (
    "ceiling",
    "drain",
    "backlog",
    "submit",
    "latency",
    "recovery",
    "hostile",
    "watch",
    "throughput",
    "list",
    "workers",
)

Scenario = Callable[[scenarios.Bench], Awaitable[scenarios.Figures]]


def _runs(name: str) -> list[tuple[str, Scenario]]:
    """The scenario runs behind a name given on the command line."""
    runs: dict[str, list[tuple[str, Scenario]]] = {
        "ceiling": [("pgbench", scenarios.ceiling)],
        "drain": [
            ("drain, 1 pod", lambda bench: scenarios.drain(bench, 1)),
            ("drain, 2 pods", lambda bench: scenarios.drain(bench, 2)),
            (
                "drain, 2 pods via PgBouncer",
                lambda bench: scenarios.drain(bench, 2, pgbouncer=True),
            ),
        ],
        "backlog": [("backlog", backlog.scenario)],
        "submit": [
            (
                "submit, gRPC",
                lambda bench: scenarios.submit(bench, "submit_grpc", bench.options.grpc_client),
            ),
            (
                "submit, gRPC from Python",
                lambda bench: scenarios.submit(bench, "submit_grpcio", "grpcio"),
            ),
            (
                "submit, REST",
                lambda bench: scenarios.submit(bench, "submit_rest", bench.options.rest_client),
            ),
            ("batch submit, gRPC", scenarios.submit_batch),
        ],
        "latency": [
            ("latency, gRPC", lambda bench: scenarios.latency(bench, "grpc")),
            ("latency, REST", lambda bench: scenarios.latency(bench, "rest")),
        ],
        "recovery": [("recovery", scenarios.recovery)],
        "hostile": [("hostile input", scenarios.hostile)],
        "watch": [
            ("idle watchers", watch.idle_watchers),
            (
                "drain, 1 pod, watch trigger off",
                lambda bench: scenarios.drain(bench, 1, watch_trigger=False),
            ),
        ],
        "throughput": [
            ("drain, 1 pod (throughput ring, beside)", lambda bench: scenarios.drain(bench, 1)),
            (
                "drain, 1 pod, throughput ring off",
                lambda bench: scenarios.drain(bench, 1, throughput_ring=False),
            ),
        ],
        "list": [("ListSteps pages", listing.list_pages)],
        "workers": [
            ("drain, 1 pod (in-pod, beside)", lambda bench: scenarios.drain(bench, 1)),
            ("remote drain, 2 workers, 1 pod", lambda bench: workers.remote_drain(bench, 1)),
            ("remote drain, 2 workers, 2 pods", lambda bench: workers.remote_drain(bench, 2)),
            ("idle long polls", workers.idle_long_polls),
            ("500 long polls, single submits", workers.long_polls_single_submits),
        ],
    }
    return runs[name]


def fill_sizes(
    args: argparse.Namespace, full: dict[str, int], quick: dict[str, int]
) -> argparse.Namespace:
    """`args` with each size flag left unset at the full run's or --quick's default."""
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; size flags left unset take the full or the --quick default."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    add = parser.add_argument
    add("--quick", action="store_true", help="small sizes, 1 repetition, short recovery")
    add("--repetitions", type=int, help="runs of every scenario (full: 3)")
    add("--scenarios", default=",".join(SCENARIO_NAMES), help="comma-separated subset")
    add("--drain-steps", type=int, help="steps pre-loaded for each drain (full: 20000)")
    add("--backlog-steps", type=int, help="steps of the backlog drain (full: 1000000)")
    add("--list-steps", type=int, help="finished steps seeded for ListSteps (full: 10000000)")
    add("--submit-steps", type=int, help="single submits per protocol (full: 20000)")
    add("--clients", type=int, default=32, help="concurrent single-submit clients")
    add(
        "--rest-client",
        choices=("wrk", "httpx"),
        default="wrk" if shutil.which("wrk") else "httpx",
        help="REST submit load generator (default: wrk when installed)",
    )
    add(
        "--grpc-client",
        choices=("h2load", "grpcio"),
        default="h2load" if shutil.which("h2load") else "grpcio",
        help="gRPC submit load generator (default: h2load when installed)",
    )
    add("--batch-size", type=int, default=1000, help="steps per SubmitBatch call")
    add("--batches", type=int, help="SubmitBatch calls (full: 50)")
    add("--batch-callers", type=int, default=4, help="concurrent SubmitBatch callers")
    add("--latency-submits", type=int, help="probes per protocol (full: 500)")
    add("--latency-rate", type=float, default=100.0, help="probe submits per second")
    add("--max-parallelism", type=int, default=100, help="FLEETQ_MAX_PARALLELISM of pods")
    add("--capacity-threshold", type=float, default=1.0, help="FLEETQ_CAPACITY_THRESHOLD")
    add("--pgbench-seconds", type=int, help="pgbench -T (full: 15)")
    add("--recovery-hold", type=float, default=2.0, help="seconds each recovery step sleeps")
    add("--output", type=Path, default=RESULTS_DIR, help="where the report is written")
    args = fill_sizes(parser.parse_args(argv), FULL, QUICK)
    unknown = set(args.scenarios.split(",")) - set(SCENARIO_NAMES)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIO_NAMES}")
    return args


def scenario_options(args: argparse.Namespace) -> scenarios.Options:
    return scenarios.Options(
        drain_steps=args.drain_steps,
        backlog_steps=args.backlog_steps,
        list_steps=args.list_steps,
        submit_steps=args.submit_steps,
        clients=args.clients,
        batch_size=args.batch_size,
        batches=args.batches,
        batch_callers=args.batch_callers,
        latency_submits=args.latency_submits,
        latency_rate=args.latency_rate,
        max_parallelism=args.max_parallelism,
        capacity_threshold=args.capacity_threshold,
        pgbench_seconds=args.pgbench_seconds,
        recovery_env=QUICK_RECOVERY_ENV if args.quick else {},
        recovery_hold_s=args.recovery_hold,
        rest_client=args.rest_client,
        grpc_client=args.grpc_client,
    )


def _settings(args: argparse.Namespace, options: scenarios.Options) -> dict[str, str]:
    capacity = int(options.max_parallelism * options.capacity_threshold)
    rest_client = (
        "wrk -t1, one keep-alive connection per client (benchmarks/wrk_submit.lua)"
        if options.rest_client == "wrk"
        else "an httpx.AsyncClient per client, HTTP/1.1 keep-alive, in one asyncio process"
    )
    grpc_client = (
        "h2load -t1 -m1 (nghttp2, C), one HTTP/2 connection per client"
        if options.grpc_client == "h2load"
        else _GRPCIO_CLIENT
    )
    recovery = (
        ", ".join(f"{key}={value}" for key, value in options.recovery_env.items())
        or "FLEET-Q defaults (heartbeat 5 s, dead-pod threshold 15 s, recovery every 5 s "
        "and when a live pod's heartbeat is due to expire)"
    )
    return {
        "run": f"{args.repetitions} repetition(s){', quick smoke run' if args.quick else ''}",
        "pods": (
            f"FLEETQ_MAX_PARALLELISM={options.max_parallelism} x FLEETQ_CAPACITY_THRESHOLD="
            f"{options.capacity_threshold:g} (capacity {capacity}, not the bottleneck), "
            "FLEETQ_LOG_LEVEL=WARNING, otherwise defaults"
        ),
        "drain": (
            f"{options.drain_steps} no-op steps pre-loaded with SubmitBatch; the pods start "
            "claiming together; steps/s = N / (max(finished_ts) - min(claimed_ts))"
        ),
        "backlog": (
            f"{options.backlog_steps} no-op steps loaded with SubmitBatch, then drained by one "
            "pod with FLEETQ_RETENTION=0; steps/s of each tenth of the drain, from the "
            "database clock (benchmarks/backlog.py)"
        ),
        "submit": (
            f"{options.submit_steps} single submits from {options.clients} concurrent "
            f"clients, one call in flight each; gRPC: {grpc_client}; gRPC from Python: "
            f"{_GRPCIO_CLIENT}; REST: {rest_client}; pods run no benchmark type (nothing "
            "drains)"
        ),
        "batch submit": (
            f"{options.batches} SubmitBatch calls of {options.batch_size} steps from "
            f"{options.batch_callers} concurrent gRPC callers"
        ),
        "latency": (
            f"{options.latency_submits} submits at {options.latency_rate:g}/s from one "
            "client to an idle pod (gRPC: one channel; REST: a pool of up to "
            f"{scenarios.LATENCY_REST_CONNECTIONS} keep-alive connections); handler start "
            "minus submit call start, both time.time()"
        ),
        "recovery": (
            f"2 pods full of steps sleeping {options.recovery_hold_s:g} s; kill -9 the "
            f"follower; {recovery}"
        ),
        "hostile": (
            f"{scenarios.HOSTILE_CLIENTS} clients send 1 MiB bodies for "
            f"{scenarios.HOSTILE_SECONDS:g} s (lists nested 29 deep; the most nesting the "
            "default FLEETQ_MAX_JSON_VALUES accepts plus a string) while one client GETs "
            f"/health back to back; then {scenarios.HOSTILE_BURST} accepted 1 MiB submits at "
            "once, RSS peak minus RSS before"
        ),
        "watch": (
            f"{watch.IDLE_WATCHERS} WatchStep streams (grpc.aio, a channel per 100) on one pod, "
            f"one per pending step, CPU over {watch.IDLE_MEASURE_S:g} s with and without them; and "
            "`drain, 1 pod` again with the watched-steps trigger disabled, side by side"
        ),
        "throughput": (
            "`drain, 1 pod` twice, side by side: as shipped, and with migration 0013's "
            "per-minute throughput upsert replaced by a no-op"
        ),
        "list": (
            f"{options.list_steps} completed steps seeded by generate_series (triggers off), "
            f"then {listing.CALLS_PER_DEPTH} ListSteps calls of {listing.PAGE_SIZE} steps "
            f"over gRPC at each depth of {', '.join(f'{d:g}' for d in listing.DEPTHS)} of the "
            "table, unfiltered and filtered by one type of 20; client-side time per call"
        ),
        "ceiling": (
            f"pgbench -N -c 8 -j 2 -T {options.pgbench_seconds} (scale 1) with "
            f"{find_pgbench() or 'no pgbench found'}"
        ),
    }


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start PostgreSQL, run the scenarios, stop everything; returns the report data."""
    options = scenario_options(args)
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    machine = environment.machine()  # before we load the machine ourselves
    async with bench_session("fleetq-bench") as (postgres, log_dir):
        bench = scenarios.Bench(postgres, options, log_dir, await postgres.postmaster())
        header = {
            "started": started,
            "command": shlex.join(["python", "-m", "benchmarks.run", *sys.argv[1:]]),
            "machine": machine,
            "versions": environment.versions(),
            "postgres": await postgres.describe(),
            "settings": _settings(args, options),
        }
        samples: dict[str, list[float]] = defaultdict(list)
        for repetition in range(1, args.repetitions + 1):
            for name in args.scenarios.split(","):
                for label, scenario in _runs(name):
                    began = time.monotonic()
                    figures = await scenario(bench)
                    for key, value in figures.items():
                        samples[key].append(value)
                    shown = ", ".join(f"{key}={value:,.2f}" for key, value in figures.items())
                    took = time.monotonic() - began
                    _log(f"[{repetition}/{args.repetitions}] {label} ({took:.0f}s): {shown}")
    return report.build(header=header, samples=samples)


def main(argv: list[str] | None = None) -> int:
    """Run, write the report files and print the markdown."""
    args = parse_args(argv)
    # SIGTERM (timeout, CI, kill) cleans up like Ctrl-C: pods and PostgreSQL are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    data = asyncio.run(run(args))
    json_path, markdown_path = report.write(data, args.output, "bench", report.markdown(data))
    print(report.markdown(data))
    _log(f"report written to {markdown_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
