"""CPU per step of a SubmitBatch of 1,000 in the pod's and the client's Python alone: no
transport, no database (issue #13's bulk row, taken apart).

The pod's side: the request parsed, every step validated and turned into its row
(`_prepare_batch`), the rows as the store sends them (COPY's text, or the INSERT's JSON
document in a tree before 7e467b5), the outcomes and the answer serialised.
The client's side: the request built from step dicts and serialised, the answer read.
It imports only what every tree since efe3901 has, so it runs against an older checkout:

    cd /path/to/other/tree && .venv/bin/python /path/to/benchmarks/batch_cpu.py

Prints CPU microseconds per step (time.process_time) of each side, each round, and the
median of the rounds; run two trees in turn, several times, on a loaded machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from fleetq.v1 import fleetq_pb2 as pb

from fleetq_client import calls
from fleetq_server.api.servicer import FleetQServicer, _batch_response
from fleetq_server.config import Settings
from fleetq_server.store.records import InsertOutcome, NewStep
from fleetq_server.store.steps import _json, _step_row

try:  # large batches of plain steps go by COPY since 7e467b5
    from fleetq_server.store.step_copy import _rows as _encoded
except ImportError:  # an older tree: the INSERT's JSON document

    def _encoded(steps: list[NewStep]) -> object:
        return _json([_step_row(step) for step in steps])


STEPS = 1000


class _Servicer(FleetQServicer):
    """The servicer's batch path without a pod: `_prepare_batch` reads only settings."""

    def __init__(self) -> None:
        self._settings = Settings()


def _specs() -> list[calls.StepSpec]:
    return [{"type": "bench_noop", "args": {"n": n}} for n in range(STEPS)]


def sides() -> dict[str, Callable[[], object]]:
    """Each side's work for one batch."""
    servicer = _Servicer()
    request = calls.submit_batch(_specs()).request.SerializeToString()

    def pod() -> bytes:
        steps = servicer._prepare_batch(pb.SubmitBatchRequest.FromString(request))
        _encoded(steps)
        outcomes = [InsertOutcome(step_id=step.step_id, created=True) for step in steps]
        return _batch_response(zip(steps, outcomes, strict=True)).SerializeToString()

    answer = pod()

    def client() -> object:
        calls.submit_batch(_specs()).request.SerializeToString()
        return calls.submit_batch([]).read(pb.SubmitBatchResponse.FromString(answer))

    return {"pod": pod, "client": client}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=5, help="batches timed per round")
    args = parser.parse_args()
    for name, work in sides().items():
        rounds = []
        for _ in range(args.rounds):
            started = time.process_time()
            for _ in range(args.batches):
                work()
            rounds.append((time.process_time() - started) / args.batches / STEPS * 1e6)
        shown = ", ".join(f"{value:.1f}" for value in rounds)
        print(f"{name}: {shown}; median {statistics.median(rounds):.1f} us CPU per step")


if __name__ == "__main__":
    main()
