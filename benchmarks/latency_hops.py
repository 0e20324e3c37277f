"""Where one probe's enqueue-to-start milliseconds go, hop by hop (issue #13 item 4).

    .venv/bin/python -m benchmarks.latency_hops [--probes 400] [--rate 100] [--pods-python P]

A pod loads this module as its handlers module (FLEETQ_HANDLERS): `register` adds the
probe type and wraps the pod's submit path so that each hop stamps time.time() under the
probe's `sent` value (the client's clock when its call began): the servicer receiving the
call, the group commit's flush, the insert's statement and return, the claim's, the launch
and the handler's start. The probe returns the stamps; the client prints each leg's p50,
p90 and p99. Wrapping costs a few microseconds per hop; it measures the path, not the pod.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from fleetq_server.handlers import HandlerRegistry, StepContext

HOPS_TYPE = "bench_hops"
# Each hop's stamps by the probe's `sent` value, in the pod process.
_STAMPS: dict[float, dict[str, float]] = {}


def _stamp(sent: float | None, hop: str) -> None:
    if sent is not None:
        _STAMPS.setdefault(sent, {}).setdefault(hop, time.time())


def _sent_of(args: Any) -> float | None:
    value = args.get("sent") if isinstance(args, dict) else None
    return float(value) if isinstance(value, int | float) else None


async def hops(args: dict[str, Any], context: StepContext) -> dict[str, float]:
    """The stamps of this probe's hops, its handler's start last."""
    sent = _sent_of(args)
    _stamp(sent, "handler")
    return _STAMPS.pop(sent, {}) if sent is not None else {}


def _wrap(
    owner: Any, name: str, before: str, after: str | None, sents: Callable[..., list[float]]
) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        found = sents(*args, **kwargs)
        for sent in found:
            _stamp(sent, before)
        result = await original(*args, **kwargs)
        for sent in found:
            if after is not None:
                _stamp(sent, after)
        return result

    setattr(owner, name, wrapped)


def register(registry: HandlerRegistry) -> None:
    """Add the probe type and wrap the hops of the submit path (this process only)."""
    from fleetq_server.api.servicer import FleetQServicer
    from fleetq_server.runtime.claimer import ClaimLoop
    from fleetq_server.store.steps import StepQueries

    registry.add(HOPS_TYPE, hops)

    def request_sent(_self: Any, request: Any, *_: Any) -> list[float]:
        field = request.args.fields.get("sent") if request.HasField("args") else None
        return [field.number_value] if field is not None else []

    def steps_sent(_self: Any, steps: Any, *_: Any, **__: Any) -> list[float]:
        return [s for s in (_sent_of(step.args) for step in steps) if s is not None]

    _wrap(FleetQServicer, "SubmitStep", "received", "answered", request_sent)

    def batch_sent(_self: Any, request: Any, *_: Any) -> list[float]:
        fields = [step.args.fields.get("sent") for step in request.steps]
        return [field.number_value for field in fields if field is not None]

    # The client sends submits that meet in its group commit as one SubmitBatch.
    _wrap(FleetQServicer, "SubmitBatch", "received", "answered", batch_sent)
    _wrap(FleetQServicer, "_insert_received", "flush", None, steps_sent)
    # The store's insert-and-claim, and inside it (before the claim moved into the insert)
    # the insert's own statement.
    _wrap(StepQueries, "step_insert_claim", "store", "stored", steps_sent)
    _wrap(
        StepQueries, "_insert", "insert", "inserted", lambda s, _, steps, **__: steps_sent(s, steps)
    )
    # The claim's stamps go on every probe inside the store's insert-and-claim.
    _wrap(StepQueries, "step_claim_batch", "claim", "claimed", lambda *_, **__: _unclaimed())
    original_launch = ClaimLoop._launch

    def launch(self: ClaimLoop, claimed: list[Any]) -> None:
        for step in claimed:
            _stamp(_sent_of(step.args), "launch")
        original_launch(self, claimed)

    ClaimLoop._launch = launch  # type: ignore[method-assign]


def _unclaimed() -> list[float]:
    return [
        sent for sent, stamps in _STAMPS.items() if "store" in stamps and "stored" not in stamps
    ]


def _stamp_client_calls() -> None:
    """Stamp when the client's group commit sends each probe's call (this process)."""
    from fleetq_client.aio import AsyncFleetQClient

    def requests_sent(_self: Any, requests: Any) -> list[float]:
        fields = [request.args.fields.get("sent") for request in requests]
        return [field.number_value for field in fields if field is not None]

    _wrap(AsyncFleetQClient, "_send_submits", "called", None, requests_sent)


HOPS = (
    *("called", "received", "flush", "store", "insert", "inserted", "claim", "claimed"),
    *("stored", "launch", "handler"),
)


async def measure(probes: int, rate: float, env: dict[str, str]) -> dict[str, Any]:
    """One pod on a fresh database, `probes` probes at `rate`/s; every leg's percentiles."""
    from benchmarks import clients
    from benchmarks.harness import PodFleet, bench_session

    async with (
        bench_session("fleetq-hops") as (postgres, log_dir),
        postgres.fresh_database() as url,
    ):
        with PodFleet(url, log_dir) as fleet:
            pod_env = {
                "FLEETQ_LOG_LEVEL": "WARNING",
                "FLEETQ_MAX_PARALLELISM": "100",
                "FLEETQ_CAPACITY_THRESHOLD": "1.0",
                "FLEETQ_HANDLERS": "benchmarks.latency_hops",
                **env,
            }
            (pod,) = fleet.start(1, pod_env)
            _stamp_client_calls()
            client = clients.FleetQClient(pod.grpc_target)
            rows: list[dict[str, float]] = []

            async def probe(n: int) -> None:
                sent = time.time()
                await client.submit(0, HOPS_TYPE, {"sent": sent} if n >= 20 else {"n": n})
                if n >= 20:
                    rows.append({"sent": sent, "acked": time.time()})

            async with client:
                await clients.paced(probes + 20, rate, probe)
            import asyncpg

            connection = await asyncpg.connect(url)
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    results = await connection.fetch(
                        "SELECT args, result, extract(epoch FROM created_ts) AS created,"
                        " extract(epoch FROM claimed_ts) AS claimed_db FROM fleetq_steps"
                        " WHERE type = $1 AND status = 'completed' AND args ? 'sent'",
                        HOPS_TYPE,
                    )
                    if len(results) >= probes:
                        break
                    await asyncio.sleep(0.2)
            finally:
                await connection.close()
    acked = {row["sent"]: row["acked"] for row in rows}
    legs: dict[str, list[float]] = {}
    for record in results:
        sent = json.loads(record["args"])["sent"]
        stamps = json.loads(record["result"])
        stamps = {"sent": sent, **stamps}
        stamps["db_insert_txn"] = float(record["created"])
        stamps["db_claim_txn"] = float(record["claimed_db"])
        if sent in _STAMPS:  # the client's call, after its group commit's queue
            stamps["called"] = _STAMPS[sent]["called"]
        if sent in acked:
            stamps["acked"] = acked[sent]
        order = ["sent", *[hop for hop in HOPS if hop in stamps]]
        for a, b in itertools.pairwise(order):
            legs.setdefault(f"{a}->{b}", []).append((stamps[b] - stamps[a]) * 1000)
        legs.setdefault("total sent->handler", []).append((stamps["handler"] - sent) * 1000)
        if "acked" in stamps:
            legs.setdefault("sent->acked", []).append((stamps["acked"] - sent) * 1000)
        if "answered" in stamps:
            legs.setdefault("handler->answered", []).append(
                (stamps["answered"] - stamps["handler"]) * 1000
            )
    return {leg: _cuts(values) for leg, values in legs.items()}


def _cuts(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"n": len(values), "p50": cuts[49], "p90": cuts[89], "p99": cuts[98]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probes", type=int, default=400)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the pod")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    figures = asyncio.run(measure(args.probes, args.rate, env))
    for leg, cuts in figures.items():
        print(
            f"{leg:24} n={cuts['n']:4.0f}  p50 {cuts['p50']:7.3f}  p90 {cuts['p90']:7.3f}"
            f"  p99 {cuts['p99']:7.3f} ms"
        )


if __name__ == "__main__":
    main()
