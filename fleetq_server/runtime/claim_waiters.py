"""Long polls waiting for work: ClaimSteps calls with nothing to claim sleep here until the
pod's submit LISTEN names one of their types, so an idle long poll costs no query.

A submit's notification says how many steps of each type it added, and only as many
waiters wake as can take them (each takes up to its max_steps), oldest first: 500 polls
waiting for one type and a single submit cost one claim statement, not 500. A woken waiter
that leaves before its claim (its wait ran out, its caller left) passes its wake on, so a
submit is never left to waiters that are still asleep.
"""

import asyncio
import contextlib
from collections.abc import Iterable, Iterator, Mapping


class ClaimWaiter:
    """One waiting ClaimSteps call: its types, how many steps its claim takes, and the
    wake it has not yet acted on."""

    __slots__ = ("_event", "owed", "takes", "types")

    def __init__(self, types: frozenset[str], takes: int) -> None:
        self._event = asyncio.Event()
        self.types = types
        self.takes = takes
        # Woken by a counted notification and not yet claimed since: some of those steps
        # are this waiter's to take, and another's if it leaves.
        self.owed = False

    @property
    def woken(self) -> bool:
        """Whether a notification arrived since the last `begin_claim()`."""
        return self._event.is_set()

    def wake(self, *, owed: bool) -> None:
        """Set by a notification; `owed`: one that counted on this waiter's claim."""
        self.owed = self.owed or owed
        self._event.set()

    def begin_claim(self) -> None:
        """About to claim: what woke it so far is acted on by that claim."""
        self._event.clear()
        self.owed = False

    async def wait(self, seconds: float) -> bool:
        """Wait until woken or `seconds` pass; whether it was woken."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0.0)):
                await self._event.wait()
        return self._event.is_set()


class ClaimWaiters:
    """Who waits for which step types; `notify` wakes those a notification concerns."""

    def __init__(self) -> None:
        # Dicts as ordered sets: the eldest waiter of a type is woken first.
        self._by_type: dict[str, dict[ClaimWaiter, None]] = {}
        self._all: dict[ClaimWaiter, None] = {}

    @property
    def waiting(self) -> int:
        """Long polls registered now."""
        return len(self._all)

    def notify(self, counts: Mapping[str, int] | None) -> None:
        """New steps by type: wake, per type, the eldest waiters not yet woken until their
        claims can take that many. None (a release, a requeue, a reconnect that may have
        missed notifications, shutdown): wake every waiter."""
        if counts is None:
            for waiter in self._all:
                waiter.wake(owed=False)
            return
        for step_type, count in counts.items():
            left = count
            for waiter in self._by_type.get(step_type, ()):
                if left <= 0:
                    break
                if waiter.woken:  # its claim is already spoken for
                    continue
                waiter.wake(owed=True)
                left -= waiter.takes

    @contextlib.contextmanager
    def watching(self, step_types: Iterable[str], takes: int) -> Iterator[ClaimWaiter]:
        """A waiter for `step_types` whose claims take up to `takes` steps, registered
        while the block runs. Registered before the caller's first claim, so a submit
        committed between an empty claim and the wait is not missed: the caller calls
        `begin_claim()` before each claim."""
        waiter = ClaimWaiter(frozenset(step_types), takes)
        self._all[waiter] = None
        for step_type in waiter.types:
            self._by_type.setdefault(step_type, {})[waiter] = None
        try:
            yield waiter
        finally:
            self._all.pop(waiter, None)
            for step_type in waiter.types:
                waiters = self._by_type.get(step_type)
                if waiters is not None:
                    waiters.pop(waiter, None)
                    if not waiters:
                        del self._by_type[step_type]
            if waiter.owed:  # woken for steps it will not claim: someone else must
                self.notify(dict.fromkeys(waiter.types, waiter.takes))
