"""The offload thread and collections_paused: no automatic garbage collection while a
large conversion runs or its values are alive, and the collector always comes back."""

import asyncio
import gc
import threading

import pytest

from fleetq_server.api import offload
from fleetq_server.api.offload import collections_paused, off_loop


async def test_work_off_the_loop_runs_with_collections_paused_and_resumes_them() -> None:
    assert gc.isenabled()
    assert await off_loop(gc.isenabled) is False
    assert gc.isenabled()


async def test_a_failing_piece_of_work_resumes_collections() -> None:
    def fail() -> None:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await off_loop(fail)
    assert gc.isenabled()


async def test_overlapping_pauses_resume_collections_when_the_last_one_ends() -> None:
    first_in, second_out = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        with collections_paused():
            first_in.set()
            await second_out.wait()
            assert not gc.isenabled()  # the second's end did not resume them

    async def second() -> None:
        await first_in.wait()
        with collections_paused():
            assert not gc.isenabled()
        second_out.set()

    await asyncio.gather(first(), second())
    assert gc.isenabled()


def test_pauses_from_two_threads_share_one_count() -> None:
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with collections_paused():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(10)
    with collections_paused():
        pass
    assert not gc.isenabled()  # the thread's pause still holds
    leave.set()
    thread.join(10)
    assert gc.isenabled()


def test_pauses_overlapping_past_the_limit_resume_collections_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(offload, "MAX_PAUSE_S", -1.0)  # any overlap is past it
    with collections_paused():
        assert not gc.isenabled()
        with collections_paused():  # begins after the limit: garbage waits no longer
            assert gc.isenabled()
        assert gc.isenabled()
    assert gc.isenabled()


def test_a_collector_turned_off_elsewhere_stays_off() -> None:
    gc.disable()
    try:
        with collections_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
