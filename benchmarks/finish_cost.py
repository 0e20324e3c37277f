"""What the per-minute throughput counters (migration 0013) add to the outcome write.

    python -m benchmarks.finish_cost                 # 10 rounds of 2,000 outcomes per variant
    python -m benchmarks.finish_cost --rounds 6 --steps 1000 --finishers 4 --batch 8

One database, the store's own `step_finish_many` (the pod's outcome statement) driven by
`--finishers` concurrent tasks, `--batch` outcomes per statement. Rounds alternate between
the ring as shipped and the ring's upsert replaced by a no-op function (everything else the
same: the counts trigger, its aggregate, the watch trigger), so both variants see the same
machine load; the figures are medians over rounds. A whole-pod drain on a shared machine
varies by tens of percent between runs; this isolates the one statement that changed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from benchmarks.harness import bench_session
from benchmarks.scenarios import THROUGHPUT_RING_OFF
from fleetq_server.store import Store, open_store
from fleetq_server.store.records import ClaimedStep, NewStep, StepOutcome
from fleetq_server.submission import SubmitRequest, new_step_ids, prepare_step

_RING_ON = "ring"
_RING_OFF = "no ring (upsert stubbed)"


async def _shipped_body(store: Store) -> str:
    """fleetq_throughput_add as migrated, to restore it after THROUGHPUT_RING_OFF."""
    async with store._connection() as connection:
        definition: str = await connection.fetchval(
            "SELECT pg_get_functiondef('fleetq_throughput_add(bigint, bigint)'::regprocedure)"
        )
    return definition


async def _set_ring(store: Store, definition: str) -> None:
    # Each pooled connection caches the function's plan; a new definition invalidates it.
    async with store._connection() as connection:
        await connection.execute(definition)


def _steps(count: int) -> list[NewStep]:
    request = SubmitRequest(
        type="bench_noop",
        args={},
        metadata=None,
        priority=0,
        max_retries=0,
        idempotency_key=None,
    )
    return [prepare_step(request, step_id) for step_id in new_step_ids(count)]


async def _round(store: Store, steps: int, finishers: int, batch: int) -> float:
    """Milliseconds per outcome statement over one round: `steps` steps submitted and claimed
    beforehand, then finished `batch` at a time by `finishers` concurrent tasks."""
    for start in range(0, steps, 1000):
        await store.step_insert_many(_steps(min(1000, steps - start)))
    claimed = []
    while len(claimed) < steps:
        claimed += await store.step_claim_batch("bench", ["bench_noop"], 1000)
    batches = [claimed[i : i + batch] for i in range(0, len(claimed), batch)]
    queue: asyncio.Queue[list[ClaimedStep]] = asyncio.Queue()
    for chunk in batches:
        queue.put_nowait(chunk)

    async def finisher() -> None:
        while not queue.empty():
            chunk = queue.get_nowait()
            await store.step_finish_many(
                [StepOutcome(step, "bench", result_json="1") for step in chunk]
            )

    started = time.perf_counter()
    await asyncio.gather(*(finisher() for _ in range(finishers)))
    elapsed = time.perf_counter() - started
    return elapsed * 1000 / len(batches)


async def main(args: argparse.Namespace) -> None:
    session = bench_session("fleetq-finish-cost")
    async with session as (postgres, _logs), postgres.fresh_database() as url:
        store = await open_store(url, pool_size=args.finishers + 1)
        try:
            await store.pod_register("bench", args.steps)
            shipped = await _shipped_body(store)
            await _round(store, args.steps, args.finishers, args.batch)  # warm-up
            figures: dict[str, list[float]] = {_RING_ON: [], _RING_OFF: []}
            for n in range(args.rounds * 2):
                variant = (_RING_ON, _RING_OFF)[n % 2]
                await _set_ring(store, shipped if variant == _RING_ON else THROUGHPUT_RING_OFF)
                figures[variant].append(await _round(store, args.steps, args.finishers, args.batch))
            await _set_ring(store, shipped)
            series = await store.throughput_list(120)
        finally:
            await store.close()
    counted = sum(m.completed for m in series)
    print(
        f"{args.rounds} rounds per variant, alternating; {args.steps} outcomes per round,"
        f" {args.batch} per statement, {args.finishers} concurrent finishers"
    )
    for variant, values in figures.items():
        rounds = ", ".join(f"{v:.3f}" for v in values)
        print(f"{variant:>26}: median {statistics.median(values):.3f} ms/statement ({rounds})")
    on, off = (statistics.median(figures[v]) for v in (_RING_ON, _RING_OFF))
    print(f"ring / no ring: {on / off:.3f}; completions counted by the ring: {counted}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.finish_cost", description=__doc__)
    parser.add_argument("--rounds", type=int, default=10, help="rounds per variant")
    parser.add_argument("--steps", type=int, default=2000, help="outcomes per round")
    parser.add_argument("--finishers", type=int, default=4, help="concurrent outcome writers")
    parser.add_argument("--batch", type=int, default=8, help="outcomes per statement")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
