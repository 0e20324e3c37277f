"""Bulk submits from one caller to the pods of two source trees, side by side (#13 item 1):
the `make bench-peers` bulk row without PgQueuer, in interleaved rounds, for changes too
small to see through the machine's drift between whole peers runs.

    python -m benchmarks.bulk_ab --base /path/to/other/tree --rounds 8

One PostgreSQL (embedded, or FLEETQ_BENCH_DATABASE_URL's) with a fresh database per tree,
and one pod per tree: this tree's, and the base tree's running that tree's `.venv` and code.
This process drives both with the shipped AsyncFleetQClient (this tree's client). Each round
makes `--calls` calls of `--size` steps (`submit_many`, steps built inside the clock) to
each pod in turn, alternating which goes first, and prints the rate and the pod's and the
client's CPU per step; then the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.harness import bench_session
from fleetq_client import AsyncFleetQClient
from tests.support.server_process import REPO_ROOT, ServerProcess

STEP_TYPE = "bench_noop"  # no pod runs it: the steps stay pending


@dataclass
class Side:
    """One tree's pod and the client calling it."""

    name: str
    pod: ServerProcess
    client: AsyncFleetQClient


@dataclass
class Round:
    steps_per_s: float
    pod_us_per_step: float
    client_us_per_step: float


def _pod(tree: Path, database_url: str, log_dir: Path, name: str) -> ServerProcess:
    """A pod of `tree`, its own virtualenv's Python on its own code: run in `tree`, since
    `python -m` finds the package of its working directory before PYTHONPATH's (until
    session 16 both pods ran this tree's code, whatever `--base` said)."""
    return ServerProcess(
        database_url,
        program=(str(tree / ".venv" / "bin" / "python"), "-m", "fleetq_server"),
        cwd=tree,
        env={"PYTHONPATH": str(tree), "FLEETQ_LOG_LEVEL": "WARNING"},
        log_path=log_dir / f"{name}.log",
        name=name,
    )


async def _calls(side: Side, calls: int, size: int) -> Round:
    """`calls` submit_many calls of `size` steps, timed, with the CPU they cost."""
    pod = psutil.Process(side.pod.pid)
    pod_cpu = sum(pod.cpu_times()[:2])
    client_cpu = time.process_time()
    started = time.perf_counter()
    for call in range(calls):
        numbers = range(call * size, (call + 1) * size)
        results = await side.client.submit_many(
            [{"type": STEP_TYPE, "args": {"n": n}} for n in numbers]
        )
        if len(results) != size:
            raise RuntimeError(f"{side.name}: {len(results)} of {size} steps acknowledged")
    elapsed = time.perf_counter() - started
    steps = calls * size
    return Round(
        steps / elapsed,
        (sum(pod.cpu_times()[:2]) - pod_cpu) * 1e6 / steps,
        (time.process_time() - client_cpu) * 1e6 / steps,
    )


async def compare(base: Path, rounds: int, calls: int, size: int) -> dict[str, list[Round]]:
    """Every round's figures, per side ("base", "this")."""
    async with (
        bench_session("fleetq-bulk-ab") as (postgres, log_dir),
        contextlib.AsyncExitStack() as stack,
    ):
        sides = []
        for name, tree in (("base", base), ("this", REPO_ROOT)):
            url = await stack.enter_async_context(postgres.fresh_database())
            pod = _pod(tree, url, log_dir, name).start()
            stack.callback(pod.stop)
            pod.wait_until_healthy(timeout=60)
            client = AsyncFleetQClient(pod.grpc_target)
            stack.push_async_callback(client.close)
            sides.append(Side(name, pod, client))
        for side in sides:  # unmeasured: lazy set-up, first plans
            await _calls(side, 2, size)
        figures: dict[str, list[Round]] = {side.name: [] for side in sides}
        for number in range(rounds):
            for side in sides if number % 2 == 0 else sides[::-1]:
                figure = await _calls(side, calls, size)
                figures[side.name].append(figure)
                print(
                    f"round {number} {side.name}: {figure.steps_per_s:,.0f} steps/s, "
                    f"pod {figure.pod_us_per_step:.1f} us, "
                    f"client {figure.client_us_per_step:.1f} us per step",
                    flush=True,
                )
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="the other tree (with .venv)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=20, help="calls per side and round")
    parser.add_argument("--size", type=int, default=1000, help="steps per call")
    args = parser.parse_args()
    figures = asyncio.run(compare(args.base.resolve(), args.rounds, args.calls, args.size))
    for name, rounds in figures.items():
        rate = statistics.median(r.steps_per_s for r in rounds)
        pod = statistics.median(r.pod_us_per_step for r in rounds)
        client = statistics.median(r.client_us_per_step for r in rounds)
        print(
            f"median {name}: {rate:,.0f} steps/s, pod {pod:.1f} us, client {client:.1f} us per step"
        )
    wins = sum(
        this.steps_per_s > base.steps_per_s
        for base, this in zip(figures["base"], figures["this"], strict=True)
    )
    print(f"this tree faster in {wins} of {len(figures['this'])} rounds")


if __name__ == "__main__":
    main()
