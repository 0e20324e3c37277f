"""`make bench-peers`: FLEET-Q side by side with PgQueuer on one PostgreSQL server.

    python -m benchmarks.peers.run --peers-python .venv-peers/bin/python           # 3 reps
    python -m benchmarks.peers.run --peers-python .venv-peers/bin/python --quick   # smoke
    python -m benchmarks.peers.run --rows bulk,latency_p50 --repetitions 5         # some rows

PgQueuer (from PyPI, in its own virtualenv) runs at its own defaults through
benchmarks/peers/pgqueuer_side.py, a subprocess; FLEET-Q runs as real pods through the
benchmark harness. Every measure gets a fresh database on the same server (the embedded
one, or FLEETQ_BENCH_DATABASE_URL's), the two queues alternate which goes first, and the
table shows medians over the repetitions (issue #13's rows). The report goes to
benchmarks/results/peers-<time>.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shlex
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import clients, environment, scenarios
from benchmarks import run as bench_run
from benchmarks.harness import bench_session
from benchmarks.peers import table
from benchmarks.report import write
from benchmarks.run import RESULTS_DIR
from fleetq_server.config import Settings
from tests.support.server_process import REPO_ROOT

PGQUEUER_SIDE = Path(__file__).resolve().parent / "pgqueuer_side.py"
# `make bench`'s sizes (issue #6's, or --quick's), and issue #13's 20 bulk calls.
_SHARED_SIZES = ("repetitions", "drain_steps", "submit_steps", "latency_submits")
FULL = {key: bench_run.FULL[key] for key in _SHARED_SIZES} | {"bulk_calls": 20}
QUICK = {key: bench_run.QUICK[key] for key in _SHARED_SIZES} | {"bulk_calls": 5}
# FLEET-Q's capacity where it is "not the bottleneck" (as `make bench` runs it).
WIDE_PARALLELISM = 100

Figures = dict[str, float]
Side = Callable[[], Awaitable[Figures]]
# The table's rows, in order (issue #13's); `--rows` picks some.
ROW_KEYS = (
    "drain_1", "drain_2", "drain_default", "bulk",
    "singles_grpc", "singles_rest", "latency_p50", "latency_p99",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Picked:
    """A queue's side of a measure, its figures renamed to table rows (row=figure); its
    other figures (FLEET-Q's CPU) kept as `<first row>:<figure>`, for the CPU table."""

    side: Side
    names: dict[str, str]

    async def __call__(self) -> Figures:
        figures = await self.side()
        picked = {row: figures[figure] for row, figure in self.names.items()}
        first = next(iter(self.names))
        used = set(self.names.values())
        return picked | {f"{first}:{k}": v for k, v in figures.items() if k not in used}


@dataclasses.dataclass(frozen=True)
class Measure:
    """One run of each queue; each returns figures keyed by table row. A queue with no
    run here (None) has its figure for these rows from another measure."""

    name: str
    pgqueuer: Picked | None
    fleetq: Picked

    @property
    def rows(self) -> set[str]:
        """The table rows this measure fills, for either queue."""
        return {*self.fleetq.names, *(self.pgqueuer.names if self.pgqueuer else ())}


def rows(args: argparse.Namespace) -> tuple[table.Row, ...]:
    """The table's rows at the sizes of this run (those `--rows` selected)."""
    return tuple(row for row in _all_rows(args) if row.key in args.rows)


def _all_rows(args: argparse.Namespace) -> tuple[table.Row, ...]:
    drain = f"drain {args.drain_steps:,} no-op"
    singles = f"single submits, {args.clients} coroutines"
    return (
        table.Row("drain_1", f"{drain}, 1 worker (FLEET-Q capacity {WIDE_PARALLELISM})", "/s"),
        table.Row("drain_2", "drain, 2 workers", "/s"),
        table.Row(
            "drain_default",
            f"drain, 1 worker, FLEET-Q at its default capacity {Settings().max_capacity}",
            "/s",
        ),
        table.Row(
            "bulk",
            f"bulk: {args.bulk_calls} calls of {args.bulk_size:,} from one coroutine",
            "/s",
        ),
        table.Row("singles_grpc", f"{singles}, gRPC with `AsyncFleetQClient`", "/s"),
        table.Row("singles_rest", f"{singles}, REST (aiohttp, {args.clients} connections)", "/s"),
        table.Row(
            "latency_p50", f"enqueue to handler start at {args.latency_rate:g}/s, p50", " ms", 2
        ),
        table.Row(
            "latency_p99", f"enqueue to handler start at {args.latency_rate:g}/s, p99", " ms", 2
        ),
    )


async def pgqueuer(python: str, command: str, url: str, *flags: str) -> dict[str, float]:
    """One command of pgqueuer_side.py in PgQueuer's virtualenv; its JSON answer."""
    process = await asyncio.create_subprocess_exec(
        python, str(PGQUEUER_SIDE), command, "--dsn", url, *flags,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    output, errors = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"pgqueuer_side.py {command} failed:\n{errors.decode()[-3000:]}")
    answer: dict[str, float] = json.loads(output.decode().splitlines()[-1])
    return answer


def measures(args: argparse.Namespace, bench: scenarios.Bench) -> list[Measure]:
    """Every measure of the table, PgQueuer's side and FLEET-Q's."""
    python = args.peers_python
    defaults = Settings()
    default_bench = dataclasses.replace(
        bench,
        options=dataclasses.replace(
            bench.options,
            max_parallelism=defaults.max_parallelism,
            capacity_threshold=defaults.capacity_threshold,
        ),
    )

    def on_fresh_database(command: str, *flags: str) -> Callable[[], Awaitable[Figures]]:
        async def run() -> Figures:
            async with bench.postgres.fresh_database() as url:
                return await pgqueuer(python, command, url, *flags)

        return run

    def pick(side: Side, **names: str) -> Picked:
        return Picked(side, names)

    drain = on_fresh_database("drain", "--jobs", str(args.drain_steps), "--workers", "1")
    singles = on_fresh_database(
        "singles", "--jobs", str(args.submit_steps), "--concurrency", str(args.clients)
    )
    bulk_flags = ("--calls", str(args.bulk_calls), "--size", str(args.bulk_size))
    latency_flags = ("--count", str(args.latency_submits), "--rate", str(args.latency_rate))
    every = [
        Measure(
            "drain, 1 worker",
            # PgQueuer's defaults do not change between the two 1-worker rows.
            pick(drain, drain_1="steps_per_s", drain_default="steps_per_s"),
            pick(lambda: scenarios.drain(bench, 1), drain_1="drain_1pod_steps_per_s"),
        ),
        Measure(
            "drain, 2 workers",
            pick(
                on_fresh_database("drain", "--jobs", str(args.drain_steps), "--workers", "2"),
                drain_2="steps_per_s",
            ),
            pick(lambda: scenarios.drain(bench, 2), drain_2="drain_2pod_steps_per_s"),
        ),
        Measure(
            "drain, 1 worker, FLEET-Q default capacity",
            None,
            pick(lambda: scenarios.drain(default_bench, 1), drain_default="drain_1pod_steps_per_s"),
        ),
        Measure(
            "bulk",
            pick(on_fresh_database("bulk", *bulk_flags), bulk="steps_per_s"),
            pick(
                lambda: scenarios.submit_bulk(bench, args.bulk_calls, args.bulk_size),
                bulk="submit_bulk_steps_per_s",
            ),
        ),
        Measure(
            "single submits, gRPC",
            # PgQueuer has one way to enqueue: the same figure for both protocols' rows.
            pick(singles, singles_grpc="steps_per_s", singles_rest="steps_per_s"),
            pick(
                lambda: scenarios.submit(bench, "peers_grpc", "fleetq"),
                singles_grpc="peers_grpc_steps_per_s",
            ),
        ),
        Measure(
            "single submits, REST",
            None,
            pick(
                lambda: scenarios.submit(bench, "peers_rest", "aiohttp"),
                singles_rest="peers_rest_steps_per_s",
            ),
        ),
        Measure(
            "latency",
            pick(
                on_fresh_database("latency", *latency_flags),
                latency_p50="p50_ms",
                latency_p99="p99_ms",
            ),
            pick(
                lambda: scenarios.latency(bench, "fleetq"),
                latency_p50="latency_fleetq_p50_ms",
                latency_p99="latency_fleetq_p99_ms",
            ),
        ),
    ]
    return [measure for measure in every if measure.rows & set(args.rows)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; size flags left unset take the full or the --quick default."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers.run", description=__doc__)
    add = parser.add_argument
    add("--peers-python", default=str(REPO_ROOT / ".venv-peers" / "bin" / "python"),
        help="the Python of PgQueuer's virtualenv (make bench-peers creates it)")  # fmt: skip
    add("--output", type=Path, default=RESULTS_DIR, help="where the report is written")
    add("--quick", action="store_true", help="small sizes, 1 repetition")
    add("--repetitions", type=int, help="interleaved runs of every measure (full: 3)")
    add("--drain-steps", type=int, help="jobs pre-loaded for each drain (full: 20000)")
    add("--submit-steps", type=int, help="single submits (full: 20000)")
    add("--clients", type=int, default=32, help="concurrent single-submit coroutines")
    add("--bulk-calls", type=int, help="bulk calls from one coroutine (full: 20)")
    add("--bulk-size", type=int, default=1000, help="steps per bulk call")
    add("--latency-submits", type=int, help="probes (full: 500)")
    add("--latency-rate", type=float, default=100.0, help="probe submits per second")
    add("--rows", type=_row_keys, default=ROW_KEYS,
        help=f"table rows to measure, comma-separated (default: {','.join(ROW_KEYS)})")  # fmt: skip
    return bench_run.fill_sizes(parser.parse_args(argv), FULL, QUICK)


def _row_keys(text: str) -> tuple[str, ...]:
    keys = tuple(key.strip() for key in text.split(",") if key.strip())
    unknown = set(keys) - set(ROW_KEYS)
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"rows are among {', '.join(ROW_KEYS)}")
    return keys


def _options(args: argparse.Namespace) -> scenarios.Options:
    """`make bench`'s scenario options at these sizes, with Python clients (the way users
    submit) and a capacity that is not the bottleneck unless a row says otherwise."""
    flags = {
        "--drain-steps": args.drain_steps,
        "--submit-steps": args.submit_steps,
        "--clients": args.clients,
        "--batch-size": args.bulk_size,
        "--batches": args.bulk_calls,
        "--latency-submits": args.latency_submits,
        "--latency-rate": args.latency_rate,
        "--max-parallelism": WIDE_PARALLELISM,
        "--rest-client": "httpx",
        "--grpc-client": "grpcio",
    }
    argv = [part for flag, value in flags.items() for part in (flag, str(value))]
    return bench_run.scenario_options(bench_run.parse_args(["--quick"] * args.quick + argv))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pgqueuer_version(python: str) -> str:
    found = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('pgqueuer'))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return found.stdout.strip()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start PostgreSQL, alternate the two queues through every measure, stop everything."""
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    machine = environment.machine()
    samples: dict[str, dict[str, list[float]]] = {
        "pgqueuer": defaultdict(list),
        "fleetq": defaultdict(list),
    }
    async with bench_session("fleetq-peers") as (postgres, log_dir):
        bench = scenarios.Bench(postgres, _options(args), log_dir, await postgres.postmaster())
        header = {
            "started": started,
            "command": shlex.join(["python", "-m", "benchmarks.peers.run", *sys.argv[1:]]),
            "machine": machine,
            "versions": {
                **environment.versions(),
                "pgqueuer": _pgqueuer_version(args.peers_python),
            },
            "postgres": {**await postgres.describe(), **await scenarios.ceiling(bench)},
        }
        for repetition in range(1, args.repetitions + 1):
            for measure in measures(args, bench):
                sides = [("pgqueuer", measure.pgqueuer), ("fleetq", measure.fleetq)]
                if repetition % 2 == 0:  # alternate who goes first
                    sides.reverse()
                for queue, side in sides:
                    if side is None:
                        continue
                    began = time.monotonic()
                    figures = await side()
                    for key, value in figures.items():
                        samples[queue][key].append(value)
                    shown = ", ".join(f"{key}={value:,.2f}" for key, value in figures.items())
                    took = time.monotonic() - began
                    where = f"[{repetition}/{args.repetitions}] {queue}: {measure.name}"
                    _log(f"{where} ({took:.0f}s): {shown}")
    return {
        **header,
        "rows": table.compare(rows(args), samples["pgqueuer"], samples["fleetq"]),
        "fleetq_figures": samples["fleetq"],
    }


def markdown(args: argparse.Namespace, report: dict[str, Any]) -> str:
    """The report: context, then the ratio table."""
    bulk_call = clients.fleetq_bulk_call() or "none: SubmitBatch requests from a gRPC stub"
    facts = [
        ("Machine", report["machine"]),
        ("Versions", report["versions"]),
        ("PostgreSQL", report["postgres"]),
    ]
    lines = [
        f"### FLEET-Q and PgQueuer, {report['started']}",
        "",
        f"`{report['command']}`",
        "",
        *(
            "**"
            + title
            + ":** "
            + "; ".join(f"{key} {value}" for key, value in values.items())
            + "\n"
            for title, values in facts
        ),
        f"Medians of {args.repetitions} interleaved repetition(s), each on a fresh database. "
        "PgQueuer: `QueueManager.run()` at its defaults (one process per worker), "
        "`Queries.enqueue` (lists for bulk; an asyncpg pool at its default size for the "
        "concurrent single submits, whose one figure stands in both protocols' rows). "
        f"FLEET-Q: real pods; drains and latency run pods with capacity {WIDE_PARALLELISM} "
        "unless the row says default; submits use the shipped `AsyncFleetQClient` "
        f"(bulk: `{bulk_call}`). Drain rate: jobs / (last finish - first start). "
        "Latency: handler start minus the enqueue call's start, both time.time().",
        "",
        *table.markdown(rows(args), report["rows"]),
        "",
        "FLEET-Q's CPU per 1,000 steps (medians; `client` is the Python client's process):",
        "",
        *table.cpu_markdown(rows(args), report["fleetq_figures"]),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run, write the report files and print the markdown."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    report = asyncio.run(run(args))
    text = markdown(args, report)
    json_path, markdown_path = write(report, args.output, "peers", text)
    print(text)
    _log(f"report written to {markdown_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
