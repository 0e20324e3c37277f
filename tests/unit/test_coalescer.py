"""Group commit: concurrent submits share a flush; an item the flush refuses fails alone;
a batch stays within its item count and total size."""

import asyncio
from collections.abc import Sequence

import pytest

from fleetq_common.coalescer import Coalescer


class Refused(Exception):
    """The flush refused one of its items."""


class Unavailable(Exception):
    """The flush failed for a reason no item caused."""


class Recorder:
    """A flush that records its batches, refuses any batch holding "bad", and can be made
    to fail outright."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.down = False
        self.flushing = asyncio.Event()

    async def flush(self, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        self.flushing.set()
        await asyncio.sleep(0)  # let concurrent submits queue behind this flush
        if self.down:
            raise Unavailable
        if "bad" in items:
            raise Refused
        return [item.upper() for item in items]


async def test_concurrent_submits_share_flushes_and_get_their_own_results() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.flush, max_batch=10)

    results = await asyncio.gather(*(coalescer.submit(item) for item in "abcd"))

    assert results == ["A", "B", "C", "D"]
    assert recorder.batches == [["a", "b", "c", "d"]]


async def test_submits_arriving_during_a_flush_wait_for_the_next_one() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.flush, max_batch=10)

    first = asyncio.ensure_future(coalescer.submit("a"))
    await recorder.flushing.wait()  # the flush of "a" is under way
    results = await asyncio.gather(first, coalescer.submit("b"), coalescer.submit("c"))

    assert results == ["A", "B", "C"]
    assert recorder.batches == [["a"], ["b", "c"]]


async def test_an_item_the_flush_refuses_fails_alone() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.flush, max_batch=10, isolate=(Refused,))

    results = await asyncio.gather(
        *(coalescer.submit(item) for item in ("a", "b", "bad", "c")), return_exceptions=True
    )

    assert results[:2] + results[3:] == ["A", "B", "C"]
    assert isinstance(results[2], Refused)
    # Split in halves until the refused item is alone; the good half goes as one.
    assert recorder.batches == [["a", "b", "bad", "c"], ["a", "b"], ["bad", "c"], ["bad"], ["c"]]


async def test_a_refused_item_among_many_costs_a_few_flushes_not_one_each() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.flush, max_batch=100, isolate=(Refused,))
    items = [f"i{n}" for n in range(31)] + ["bad"]

    results = await asyncio.gather(*map(coalescer.submit, items), return_exceptions=True)

    assert results[:31] == [item.upper() for item in items[:31]]
    assert isinstance(results[31], Refused)
    assert len(recorder.batches) == 1 + 2 * 5  # the whole, then two halves per level


async def test_other_failures_fail_the_whole_flush() -> None:
    recorder = Recorder()
    recorder.down = True
    coalescer = Coalescer(recorder.flush, max_batch=10, isolate=(Refused,))

    results = await asyncio.gather(
        *(coalescer.submit(item) for item in "abc"), return_exceptions=True
    )

    assert all(isinstance(result, Unavailable) for result in results)
    assert recorder.batches == [["a", "b", "c"]]  # no one-by-one retry: no item caused it


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Coalescer(Recorder().flush, max_batch=0)


async def test_submit_all_queues_items_together_and_returns_each_outcome() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.flush, max_batch=3, isolate=(Refused,))

    results = await coalescer.submit_all(["a", "bad", "c", "d"])

    assert results[0] == "A" and results[2:] == ["C", "D"]
    assert isinstance(results[1], Refused)
    # max_batch splits the lot; the refused flush is retried in halves.
    assert recorder.batches == [["a", "bad", "c"], ["a"], ["bad", "c"], ["bad"], ["c"], ["d"]]


async def test_a_batch_holds_items_up_to_max_size_and_a_larger_item_alone() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.flush, max_batch=10, size=len, max_size=6)

    results = await coalescer.submit_all(["aa", "bb", "cc", "dd", "e" * 9, "ff"])

    assert results == ["AA", "BB", "CC", "DD", "E" * 9, "FF"]
    assert recorder.batches == [["aa", "bb", "cc"], ["dd"], ["e" * 9], ["ff"]]


def test_max_size_must_be_positive_when_sizes_count() -> None:
    with pytest.raises(ValueError, match="max_size"):
        Coalescer(Recorder().flush, max_batch=5, size=len)


async def test_submit_all_of_nothing_flushes_nothing() -> None:
    recorder = Recorder()
    assert await Coalescer(recorder.flush, max_batch=3).submit_all([]) == []
    assert recorder.batches == []


async def test_a_cancelled_submit_all_leaves_its_items_out_of_later_flushes() -> None:
    recorder = Recorder()
    release = asyncio.Event()

    async def held_flush(items: Sequence[str]) -> list[str]:
        await release.wait()
        return await recorder.flush(items)

    coalescer = Coalescer(held_flush, max_batch=10)
    first = asyncio.ensure_future(coalescer.submit("a"))
    await asyncio.sleep(0)  # "a" is being flushed: the next items queue behind it
    waiting = asyncio.ensure_future(coalescer.submit_all(["x", "y"]))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()

    assert await first == "A"
    assert await coalescer.submit("b") == "B"
    assert ["x", "y"] not in recorder.batches
    assert waiting.cancelled()


def _held_after_recording(
    max_in_flight: int,
) -> tuple[Recorder, asyncio.Event, Coalescer[str, str]]:
    """A coalescer whose flushes record their batch, then wait for the returned event."""
    recorder = Recorder()
    release = asyncio.Event()

    async def held_flush(items: Sequence[str]) -> list[str]:
        result = await recorder.flush(items)
        await release.wait()
        return result

    return recorder, release, Coalescer(held_flush, max_batch=10, max_in_flight=max_in_flight)


async def test_with_two_in_flight_a_lone_submit_goes_during_a_flush() -> None:
    recorder, release, coalescer = _held_after_recording(max_in_flight=2)
    first = asyncio.ensure_future(coalescer.submit("a"))
    await recorder.flushing.wait()  # "a" is under way and held there
    recorder.flushing.clear()
    second = asyncio.ensure_future(coalescer.submit("b"))
    await recorder.flushing.wait()  # "b" went without waiting for "a"
    # Both flushes are under way: these two wait, and then share one flush.
    later = [asyncio.ensure_future(coalescer.submit(item)) for item in "cd"]
    await asyncio.sleep(0)
    assert recorder.batches == [["a"], ["b"]]
    release.set()

    assert await asyncio.gather(first, second, *later) == ["A", "B", "C", "D"]
    assert recorder.batches == [["a"], ["b"], ["c", "d"]]


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        Coalescer(Recorder().flush, max_batch=5, max_in_flight=0)


async def test_with_two_in_flight_items_queued_together_wait_for_one_flush() -> None:
    recorder, release, coalescer = _held_after_recording(max_in_flight=2)
    first = asyncio.ensure_future(coalescer.submit("a"))
    await recorder.flushing.wait()  # "a" is under way and held there
    together = asyncio.ensure_future(coalescer.submit_all(["b", "c"]))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert recorder.batches == [["a"]]  # not alone: they wait for the flush of "a"
    release.set()

    assert await first == "A"
    assert await together == ["B", "C"]
    assert recorder.batches == [["a"], ["b", "c"]]


@pytest.mark.parametrize(("linger_turns", "batches"), [(0, [["a"], ["b"]]), (3, [["a", "b"]])])
async def test_a_lingering_flusher_takes_the_items_that_follow_within_its_turns(
    linger_turns: int, batches: list[list[str]]
) -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.flush, max_batch=10, linger_turns=linger_turns)
    first = asyncio.ensure_future(coalescer.submit("a"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # two turns later, the next item of the burst
    second = asyncio.ensure_future(coalescer.submit("b"))

    assert await asyncio.gather(first, second) == ["A", "B"]
    assert recorder.batches == batches


def test_linger_turns_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="linger_turns"):
        Coalescer(Recorder().flush, max_batch=5, linger_turns=-1)
