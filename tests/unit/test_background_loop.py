"""BackgroundLoop: the one lifecycle of the pod's loops."""

import asyncio

from fleetq_server.runtime.background import BackgroundLoop


class CountingLoop(BackgroundLoop):
    name = "counting"

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__(interval)
        self.iterations = 0
        self.iterated = asyncio.Event()

    async def run_once(self) -> None:
        self.iterations += 1
        self.iterated.set()


async def next_iteration(loop: CountingLoop) -> None:
    """Wait for the loop's next iteration (it then waits again before we resume)."""
    loop.iterated.clear()
    async with asyncio.timeout(2):
        await loop.iterated.wait()


async def test_wake_runs_the_next_iteration_at_once() -> None:
    loop = CountingLoop()
    loop.start()
    await next_iteration(loop)
    loop.wake()
    await next_iteration(loop)
    assert loop.iterations == 2
    await loop.stop()


async def test_stop_ends_the_loop_even_when_woken_at_the_same_moment() -> None:
    loop = CountingLoop()
    loop.start()
    await next_iteration(loop)
    loop.wake()  # e.g. a step finishing as the pod shuts down
    stopping = asyncio.create_task(loop.stop())
    done, _ = await asyncio.wait({stopping}, timeout=2)
    assert stopping in done, "stop() hangs: the loop outlived its cancellation"


async def test_a_failing_iteration_is_logged_and_retried_after_the_interval() -> None:
    class FailingFirst(CountingLoop):
        async def run_once(self) -> None:
            await super().run_once()
            if self.iterations == 1:
                raise RuntimeError("transient")

    loop = FailingFirst(interval=0.01)
    loop.start()
    await next_iteration(loop)
    await next_iteration(loop)
    assert loop.running
    await loop.stop()
