"""Work too large for the event loop runs here, on one worker thread.

One thread, not a pool: the work is Python holding the GIL, so more threads would add
nothing but contenders against the event loop, which then waits longer for its turn
(sys.getswitchinterval(), 5 ms, per thread ahead of it).
"""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

# Messages above this many bytes are converted off the loop; below it a conversion takes
# well under a millisecond, less than the hand-over to the thread.
OFFLOAD_BYTES = 4096
EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleetq-offload")


async def off_loop(work: Callable[[], T]) -> T:
    """`work()`, run on the worker thread."""
    return await asyncio.get_running_loop().run_in_executor(EXECUTOR, work)
