"""CPU per step of a SubmitBatch of 1,000 in the pod's and the client's Python alone: no
transport, no database (issue #13's bulk row, taken apart).

The pod's side: the request parsed, every step validated and turned into its row (the
servicer's `_batch_preparer`, as `batch_parts` calls it, in parts of 100), the rows as COPY
sends them, the answer built and serialised. The client's side: the request built from
step dicts and serialised, the answer read.

Two measures:
- CPU time (time.process_time) per step, each round and the median of the rounds; it
  moves with the machine's load, so run two trees in turn, several times.
- `--instructions`: instructions per step counted by callgrind, which load does not move.
  The script runs itself under valgrind twice, with `--batches` and with none, and prints
  the difference per step: imports and set-up cancel out. It takes about a minute.

To compare with another tree, run this file from there:

    cd /path/to/other/tree && .venv/bin/python /path/to/benchmarks/batch_cpu.py
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from fleetq.v1 import fleetq_pb2 as pb

from fleetq_client import calls
from fleetq_server.api import batch_parts
from fleetq_server.api.servicer import FleetQServicer
from fleetq_server.api.submit_answers import batch_response
from fleetq_server.config import Settings
from fleetq_server.store.records import InsertOutcome
from fleetq_server.store.step_copy import _rows

STEPS = 1000
SIDES = ("pod", "client")


class _Servicer(FleetQServicer):
    """The servicer's batch path without a pod: `_batch_preparer` reads only settings."""

    def __init__(self) -> None:
        self._settings = Settings()
        self._tracing = None


def _specs(steps: int) -> list[calls.StepSpec]:
    """The bulk row's steps: a type and a one-number args each."""
    return [{"type": "bench_noop", "args": {"n": n}} for n in range(steps)]


def sides(steps: int = STEPS) -> dict[str, Callable[[], object]]:
    """Each side's work for one batch of `steps`."""
    servicer = _Servicer()
    request = calls.submit_batch(_specs(steps)).request.SerializeToString()

    def pod() -> bytes:
        parsed = pb.SubmitBatchRequest.FromString(request)
        prepare = servicer._batch_preparer(parsed)
        prepared = []
        for start in range(0, steps, batch_parts.PART_STEPS):
            part = prepare(start, min(start + batch_parts.PART_STEPS, steps))
            _rows(part)
            prepared.extend(part)
        outcomes = [InsertOutcome(step_id=step.step_id, created=True) for step in prepared]
        return batch_response(zip(prepared, outcomes, strict=True)).SerializeToString()

    answer = pod()

    def client() -> object:
        calls.submit_batch(_specs(steps)).request.SerializeToString()
        return calls.submit_batch([]).read(pb.SubmitBatchResponse.FromString(answer))

    return {"pod": pod, "client": client}


def _cpu(side: str, rounds: int, batches: int, steps: int) -> None:
    work = sides(steps)[side]
    times = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(batches):
            work()
        times.append((time.process_time() - started) / batches / steps * 1e6)
    shown = ", ".join(f"{value:.1f}" for value in times)
    print(f"{side}: {shown}; median {statistics.median(times):.1f} us CPU per step")


def _run_batches(side: str, batches: int, steps: int) -> None:
    """What one callgrind run executes: set-up, then `batches` batches."""
    work = sides(steps)[side]
    for _ in range(batches):
        work()


def _instructions(side: str, batches: int, steps: int) -> int:
    """Instructions of this script's run of `batches` batches, by callgrind."""
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "callgrind.out")
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            sys.executable, __file__, "--side", side, "--steps", str(steps),
            "--run-batches", str(batches),
        ]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
        with open(out) as data:
            return int(re.search(r"^summary: (\d+)", data.read(), re.MULTILINE)[1])  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=5, help="batches timed per round")
    parser.add_argument("--steps", type=int, default=STEPS, help="steps per batch")
    parser.add_argument("--side", choices=SIDES, help="one side only (default: both)")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions by callgrind instead"
    )
    parser.add_argument("--run-batches", type=int, help=argparse.SUPPRESS)  # under callgrind
    args = parser.parse_args()
    if args.run_batches is not None:
        _run_batches(args.side, args.run_batches, args.steps)
        return
    for side in [args.side] if args.side else SIDES:
        if not args.instructions:
            _cpu(side, args.rounds, args.batches, args.steps)
            continue
        counted = _instructions(side, args.batches, args.steps)
        baseline = _instructions(side, 0, args.steps)
        per_step = (counted - baseline) / args.batches / args.steps
        print(f"{side}: {per_step:,.0f} instructions per step (callgrind)")


if __name__ == "__main__":
    main()
