"""The one lifecycle every background loop shares.

`start()` spawns the task, `stop()` cancels it and waits, `run_once()` does one unit of
work (tests call it directly), `wake()` cuts the current wait short. An exception in
`run_once()` is logged and the loop carries on after its interval: a loop never dies
silently. Cancellation always propagates.
"""

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

log = logging.getLogger(__name__)


def until_due(interval: float, due_in: float | None, margin: float, minimum: float) -> float:
    """A loop's wait when something falls due in `due_in` seconds (None: nothing known):
    just past it (`margin`), never past the interval, and never less than `minimum`, so a
    deadline that keeps moving (a heartbeat, an extended lease) does not spin the loop."""
    if due_in is None:
        return interval
    return min(interval, max(due_in + margin, minimum))


class BackgroundLoop(ABC):
    """Runs `run_once()` every `interval` seconds, or sooner when woken."""

    name = "loop"

    def __init__(self, interval: float) -> None:
        if not interval > 0:
            raise ValueError(f"{self.name} interval must be above zero, got {interval!r}")
        self.interval = interval
        self._wake_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def run_once(self) -> None:
        """One iteration of the loop's work."""

    def start(self) -> None:
        """Start the loop in the background (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run_forever(), name=self.name)

    async def stop(self) -> None:
        """Cancel the loop and wait until it has stopped."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def next_wait(self) -> float:
        """Seconds to wait after an iteration (unless woken): the interval, by default."""
        return self.interval

    def wake(self) -> None:
        """Run the next iteration now instead of after the interval."""
        self._wake_event.set()

    @property
    def running(self) -> bool:
        """Whether the loop's task is alive."""
        return self._task is not None and not self._task.done()

    async def _run_forever(self) -> None:
        while True:
            self._wake_event.clear()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s iteration failed; retrying in %.3gs", self.name, self.interval)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # that arrives as the event is set, and the loop would outlive stop().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.next_wait()):
                    await self._wake_event.wait()
