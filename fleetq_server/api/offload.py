"""Work too large for the event loop runs here, on one worker thread, with the cyclic
garbage collector paused.

One thread, not a pool: the work is Python holding the GIL, so more threads would add
nothing but contenders against the event loop, which then waits longer for its turn
(sys.getswitchinterval() per thread ahead of it).

A large request becomes a container per JSON array or object (a megabyte of nested lists:
half a million), and every 700 new ones set off a collection; as they survive, full
collections follow, each walking every live object with the GIL held while the event loop
waits (a dozen per such submit, up to 0.2 s each at a load of 6 on this 2-core machine).
What a conversion builds is trees, freed by reference counting: the collector has nothing
to find there. So collections wait while such work runs, and until a large submit's values
are gone (`collections_paused`); pausing only the conversions moved one long collection of
the still-living values to the event loop, which made things worse.
"""

import asyncio
import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# Messages above this many bytes are converted off the loop; below it a conversion takes
# well under a millisecond, less than the hand-over to the thread.
OFFLOAD_BYTES = 4096
# Pauses that overlap without a break resume collections after this long: cyclic garbage
# made meanwhile (by anything in the pod) is not held back for longer.
MAX_PAUSE_S = 10.0

_lock = threading.Lock()
_depth = 0  # pauses under way
_paused_at = 0.0  # when the first of them began
_disabled = False  # whether they turned the collector off (and so turn it back on)


@contextlib.contextmanager
def collections_paused() -> Iterator[None]:
    """No automatic garbage collection until the last overlapping pause ends, or until
    MAX_PAUSE_S after the first began. Any thread; nests."""
    global _depth, _paused_at, _disabled
    with _lock:
        _depth += 1
        if _depth == 1:
            _paused_at = time.monotonic()
            _disabled = gc.isenabled()
            gc.disable()
        elif _disabled and time.monotonic() - _paused_at > MAX_PAUSE_S:
            _disabled = False
            gc.enable()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _disabled:
                _disabled = False
                gc.enable()


def _paused_work(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with collections_paused():
        return work(*args, **kwargs)


class _OffloadExecutor(ThreadPoolExecutor):
    """The worker thread: each piece of work runs with collections paused."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return super().submit(_paused_work, fn, *args, **kwargs)


EXECUTOR: ThreadPoolExecutor = _OffloadExecutor(max_workers=1, thread_name_prefix="fleetq-offload")


async def off_loop(work: Callable[[], T]) -> T:
    """`work()`, run on the worker thread."""
    return await asyncio.get_running_loop().run_in_executor(EXECUTOR, work)
