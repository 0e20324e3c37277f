"""Soak run (`make soak`): a steady submit-and-process load across pods for a long time.

What the tests show in seconds, shown over minutes: memory stays flat, nothing errs, and
nothing is lost. Real pod processes (`benchmarks.harness`) on a fresh database receive
single gRPC submits on a fixed schedule (open loop: a slow pod does not slow the client
down) and run them; every few seconds each pod's RSS and the queue are sampled. At the
end the queue must drain and every acknowledged step must be completed, checked by id
in the database. Writes `soak-<time>.md` and `.json` under benchmarks/results/; exits 1
when anything failed.

    .venv/bin/python -m benchmarks.soak --duration 600 --rate 200
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psutil
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from benchmarks import environment
from benchmarks.harness import PodFleet, PostgresServer
from tests.support.server_process import REPO_ROOT, ServerProcess

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
STEP_TYPE = "hello_world"  # built in: stores a small result, so completions write rows
CALL_TIMEOUT_S = 30.0
MIB = 1024 * 1024
# Memory before this share of the run is warm-up (pools, caches); flatness is judged after.
WARMUP_SHARE = 0.1
# Largest RSS growth per pod between warm-up and the end still called flat.
FLAT_GROWTH_MIB = 10.0


@dataclass(frozen=True)
class Options:
    duration: float
    rate: float
    pods: int
    sample_interval: float
    drain_timeout: float
    output_dir: Path


@dataclass
class Sample:
    """One look at the fleet, `t` seconds into the load."""

    t: float
    rss_mib: dict[str, float]
    submitted: int
    acknowledged: int
    errors: int
    pending: int
    claimed: int
    completed: int


class Load:
    """Open-loop single submits, round-robin over the pods, counted by outcome."""

    def __init__(self, stubs: list[fleetq_pb2_grpc.FleetQServiceAsyncStub]) -> None:
        self._stubs = stubs
        self.submitted = 0
        self.acknowledged: list[str] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self._in_flight: set[asyncio.Task[None]] = set()

    async def _submit(self, number: int) -> None:
        stub = self._stubs[number % len(self._stubs)]
        request = pb.SubmitStepRequest(type=STEP_TYPE)
        request.args.update({"message": f"soak {number}"})
        try:
            reply = await stub.SubmitStep(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            self.errors[f"submit {error.code().name}"] += 1
            return
        self.acknowledged.append(reply.step_id)

    async def run(self, rate: float, duration: float) -> None:
        """Start one submit every 1/rate seconds on a fixed schedule for `duration` seconds,
        then wait for the calls still in flight."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while (due := start + self.submitted / rate) < start + duration:
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._submit(self.submitted))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            self.submitted += 1
        await asyncio.gather(*self._in_flight)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def rss_mib(pods: list[ServerProcess]) -> dict[str, float]:
    """Resident memory of each pod process (the embedded PostgreSQL is not a child)."""
    found = {}
    for pod in pods:
        try:
            found[pod.name] = round(psutil.Process(pod.pid).memory_info().rss / MIB, 1)
        except psutil.Error:
            found[pod.name] = 0.0  # gone: reported as an error at the end
    return found


async def sample(
    pods: list[ServerProcess], stub: fleetq_pb2_grpc.FleetQServiceAsyncStub, load: Load, t: float
) -> Sample:
    stats = await stub.GetQueueStats(pb.GetQueueStatsRequest(), timeout=CALL_TIMEOUT_S)
    return Sample(
        t=round(t, 1),
        rss_mib=rss_mib(pods),
        submitted=load.submitted,
        acknowledged=len(load.acknowledged),
        errors=load.error_count,
        pending=stats.pending_steps,
        claimed=stats.claimed_steps,
        completed=stats.completed_steps,
    )


async def watch(
    pods: list[ServerProcess],
    stub: fleetq_pb2_grpc.FleetQServiceAsyncStub,
    load: Load,
    interval: float,
    samples: list[Sample],
) -> None:
    """Sample every `interval` seconds (printing progress) until cancelled."""
    started = time.monotonic()
    while True:
        try:
            taken = await sample(pods, stub, load, time.monotonic() - started)
        except grpc.aio.AioRpcError as error:
            load.errors[f"stats {error.code().name}"] += 1
        else:
            samples.append(taken)
            rss = " ".join(f"{name}={mib:.1f}MiB" for name, mib in taken.rss_mib.items())
            print(
                f"t={taken.t:6.0f}s submitted={taken.submitted} completed={taken.completed} "
                f"pending={taken.pending} claimed={taken.claimed} errors={taken.errors} {rss}",
                flush=True,
            )
        await asyncio.sleep(interval)


async def wait_drained(stub: fleetq_pb2_grpc.FleetQServiceAsyncStub) -> None:
    """Return once no step is pending or claimed (the caller bounds the wait)."""
    while True:
        stats = await stub.GetQueueStats(pb.GetQueueStatsRequest(), timeout=CALL_TIMEOUT_S)
        if stats.pending_steps == 0 and stats.claimed_steps == 0:
            return
        await asyncio.sleep(0.5)


async def stored_outcomes(database_url: str, step_ids: list[str]) -> dict[str, int]:
    """How the acknowledged steps ended, by status, and how many steps exist at all."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT status, count(*) AS n FROM fleetq_steps WHERE step_id = ANY($1::text[])"
            " GROUP BY status",
            step_ids,
        )
        outcomes = {row["status"]: row["n"] for row in rows}
        outcomes["stored in total"] = await connection.fetchval("SELECT count(*) FROM fleetq_steps")
    finally:
        await connection.close()
    return outcomes


def log_errors(pods: list[ServerProcess]) -> int:
    """ERROR/CRITICAL records and tracebacks the pods logged."""
    count = 0
    for pod in pods:
        for line in pod.log_text().splitlines():
            if '"level": "ERROR"' in line or '"level": "CRITICAL"' in line or "Traceback" in line:
                count += 1
    return count


def memory_summary(samples: list[Sample], duration: float) -> dict[str, dict[str, float]]:
    """Per pod: RSS before the load, after warm-up, at the end, the maximum, and the slope
    over the second half (MiB per minute)."""
    summary = {}
    warm = [s for s in samples if s.t >= duration * WARMUP_SHARE] or samples
    for name in samples[0].rss_mib:
        series = [(s.t, s.rss_mib[name]) for s in samples]
        second_half = [(t, rss) for t, rss in series if t >= series[-1][0] / 2]
        slope = (
            statistics.linear_regression(
                [t for t, _ in second_half], [r for _, r in second_half]
            ).slope
            * 60
            if len(second_half) >= 2
            else 0.0
        )
        summary[name] = {
            "start_mib": series[0][1],
            "after_warmup_mib": warm[0].rss_mib[name],
            "end_mib": series[-1][1],
            "max_mib": max(rss for _, rss in series),
            "growth_after_warmup_mib": round(series[-1][1] - warm[0].rss_mib[name], 1),
            "second_half_slope_mib_per_min": round(slope, 3),
        }
    return summary


def markdown(report: dict[str, Any]) -> str:
    totals, verdict = report["totals"], report["verdict"]
    options = report["options"]
    lines = [
        f"# FLEET-Q soak run, {report['started']}",
        "",
        f"{options['pods']} pods, {options['rate']:g} steps/s for {options['duration']:g} s "
        f"({report['database']} PostgreSQL), step type `{STEP_TYPE}`. Machine: "
        + ", ".join(f"{k} {v}" for k, v in report["machine"].items()),
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in totals.items()),
        "",
        "| pod | RSS start | after warm-up | end | max | growth after warm-up | slope, 2nd half |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, memory in report["memory"].items():
        lines.append(
            f"| {name} | {memory['start_mib']} MiB | {memory['after_warmup_mib']} MiB | "
            f"{memory['end_mib']} MiB | {memory['max_mib']} MiB | "
            f"{memory['growth_after_warmup_mib']} MiB | "
            f"{memory['second_half_slope_mib_per_min']} MiB/min |"
        )
    lines += [
        "",
        "Verdict: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in verdict.items()),
    ]
    return "\n".join(lines) + "\n"


async def soak(options: Options, started: str, log_dir: Path) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="fleetq-soak-"))
    postgres = PostgresServer.start(workdir)
    try:
        async with postgres.fresh_database() as url:
            with PodFleet(url, log_dir) as fleet:
                pods = fleet.start(options.pods, env={"FLEETQ_LOG_LEVEL": "INFO"})
                return await _drive(options, started, pods, url, postgres.kind)
    finally:
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def _drive(
    options: Options, started: str, pods: list[ServerProcess], url: str, database: str
) -> dict[str, Any]:
    channels = [grpc.aio.insecure_channel(pod.grpc_target) for pod in pods]
    try:
        stubs = [fleetq_pb2_grpc.FleetQServiceStub(channel) for channel in channels]
        load = Load(stubs)
        samples: list[Sample] = []
        watcher = asyncio.create_task(watch(pods, stubs[0], load, options.sample_interval, samples))
        began = time.monotonic()
        await load.run(options.rate, options.duration)
        load_seconds = time.monotonic() - began
        try:
            async with asyncio.timeout(options.drain_timeout):
                await wait_drained(stubs[0])
            drained = True
        except TimeoutError:
            drained = False
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        samples.append(await sample(pods, stubs[0], load, time.monotonic() - began))
    finally:
        await asyncio.gather(*(channel.close(None) for channel in channels))

    outcomes = await stored_outcomes(url, load.acknowledged)
    completed = outcomes.get("completed", 0)
    exited = [pod.name for pod in pods if pod.returncode is not None]
    logged_errors = log_errors(pods)
    memory = memory_summary(samples, options.duration)
    totals = {
        "submitted": load.submitted,
        "acknowledged": len(load.acknowledged),
        "completed": completed,
        "not completed": len(load.acknowledged) - completed,
        "stored steps in total": outcomes["stored in total"],
        "client errors": dict(load.errors) or 0,
        "error records in pod logs": logged_errors,
        "pods that exited": exited or "none",
        "achieved submit rate (steps/s)": round(load.submitted / load_seconds, 1),
        "drained after the load": drained,
    }
    verdict = {
        "zero errors": load.error_count == 0 and logged_errors == 0 and not exited,
        "nothing lost": drained and completed == len(load.acknowledged),
        "flat memory": all(
            m["growth_after_warmup_mib"] <= FLAT_GROWTH_MIB for m in memory.values()
        ),
    }
    return {
        "started": started,
        "options": {**asdict(options), "output_dir": str(options.output_dir)},
        "database": database,
        "machine": environment.machine(),
        "versions": environment.versions(),
        "totals": totals,
        "outcomes": outcomes,
        "memory": memory,
        "verdict": verdict,
        "samples": [asdict(s) for s in samples],
    }


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (600)")
    parser.add_argument("--rate", type=float, default=200, help="submits per second (200)")
    parser.add_argument("--pods", type=int, default=2, help="pod processes (2)")
    parser.add_argument("--sample-interval", type=float, default=5, help="seconds (5)")
    parser.add_argument(
        "--drain-timeout", type=float, default=120, help="seconds for the queue to empty (120)"
    )
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.rate <= 0 or args.pods < 1 or args.sample_interval <= 0:
        parser.error("duration, rate, sample interval and pods must be positive")
    return Options(**vars(args))


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    options.output_dir.mkdir(parents=True, exist_ok=True)
    log_dir = options.output_dir / f"soak-{stamp}-logs"
    report = asyncio.run(soak(options, stamp, log_dir))
    base = options.output_dir / f"soak-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    base.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    print(f"report: {base}.md, {base}.json; pod logs: {log_dir}")
    return 0 if all(report["verdict"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
