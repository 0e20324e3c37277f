"""Long polls waiting for work: ClaimSteps calls with nothing to claim sleep here until the
pod's submit LISTEN names one of their types, so an idle long poll costs no query."""

import asyncio
import contextlib
from collections.abc import Iterable, Iterator


class ClaimWaiters:
    """Who waits for which step types; `notify` wakes those a notification concerns."""

    def __init__(self) -> None:
        self._by_type: dict[str, set[asyncio.Event]] = {}
        self._all: set[asyncio.Event] = set()

    @property
    def waiting(self) -> int:
        """Long polls registered now."""
        return len(self._all)

    def notify(self, types: frozenset[str] | None) -> None:
        """Wake the waiters of any of `types` (None: every waiter: a release, a requeue,
        or a reconnect that may have missed notifications)."""
        if types is None:
            woken: Iterable[asyncio.Event] = self._all
        else:
            woken = {event for t in types for event in self._by_type.get(t, ())}
        for event in woken:
            event.set()

    @contextlib.contextmanager
    def watching(self, step_types: Iterable[str]) -> Iterator[asyncio.Event]:
        """An event set by every notification concerning `step_types` while the block runs.
        Registered before the caller's first claim, so a submit committed between an empty
        claim and the wait is not missed: the caller clears it before each claim."""
        event = asyncio.Event()
        types = set(step_types)
        self._all.add(event)
        for step_type in types:
            self._by_type.setdefault(step_type, set()).add(event)
        try:
            yield event
        finally:
            self._all.discard(event)
            for step_type in types:
                waiters = self._by_type.get(step_type)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._by_type[step_type]


async def wait_for(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; whether it was set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(seconds, 0.0)):
            await event.wait()
    return event.is_set()
