"""Steps claimed ahead of a free slot (FLEETQ_PREFETCH_CLAIMS): how many a claim may take,
the line they wait in for a slot, and when one that waited too long is given back."""

import asyncio
import time
from collections import deque
from collections.abc import Mapping

# While handlers run shorter than this on average, a claim also takes steps beyond the
# free slots: they wait here, claimed, and start the moment a slot frees, instead of a
# claim's round trip later. The line holds about this long of handlers per slot: a
# capacity of steps at 10-20 ms, more for shorter ones, up to LINE_CAPACITIES, so a step
# waits at most about this long behind it. Bigger claims cost less per step; longer
# handlers claim only their free slots, so their steps stay free for other pods.
PREFETCH_BELOW_S = 0.02
# The most capacities of steps the pod holds ahead of its slots, the claims of outcome
# writes under way included. At capacity 8 (no-op steps, 20,000, each outcome write
# claiming for its freed slots and the line) 1 capacity made batches of 16 and 4 of 24-32:
# PostgreSQL's CPU per 1,000 steps fell 162 -> 115-127 ms, the pod's 168 -> 149-160 ms,
# interleaved, load 5-6. With two writes under way (WRITES_IN_FLIGHT) they share the room,
# so 8 keeps their batches at 24-32 (README "Two outcome writes under way").
LINE_CAPACITIES = 8
# Outcome writes that claim (`ClaimLoop.finish_and_claim`) under way at once. The claim
# loop's connection runs them one at a time, but with two the next one waits at the
# connection, its outcomes gathered, while the pod launches and runs the steps the one
# before claimed: the database and the pod work at the same time instead of in turn.
WRITES_IN_FLIGHT = 2
# Event loop turns a new outcome write lets pass before it takes the outcomes ready: the
# steps one claim launched finish within a few turns of each other, and their outcomes go
# together rather than the first one alone.
LINGER_TURNS = 3
# The weight of the latest handler's run time in that average.
_RUN_TIME_WEIGHT = 0.125
# A step claimed ahead that waits for a slot longer than this many average handlers (and
# at least GIVE_BACK_MIN_S) is given back: the handlers that started meanwhile run long,
# and another pod may have a free slot. No claim is made ahead while a handler has held
# its slot that long, so the step is not claimed back here at once.
GIVE_BACK_RUNS = 5
GIVE_BACK_MIN_S = 0.05
# The largest capacity that claims ahead, with outcome writes making the claims (`Pod`):
# at 8, one statement a cycle spends less database time per step than a claim and an
# outcome write; at 100 batches are large already, the combined statement (200 claims,
# 200 outcomes) took 50 ms where the two took 7 and 13 ms for about 100 each, and its
# flush held back the next claim (README). Between the two it is not measured.
MAX_CAPACITY = 16


class ClaimsAhead:
    """The line of steps claimed ahead, in claim order, each with the gate its slot opens,
    and the average handler run time that decides whether to claim ahead at all."""

    def __init__(self, enabled: bool, capacity: int) -> None:
        self._enabled = enabled
        self._capacity = capacity
        self._line: deque[tuple[str, asyncio.Future[None]]] = deque()
        # Running average of handlers' run time (s); None until one has run.
        self._recent_run_s: float | None = None

    @property
    def give_back_after(self) -> float:
        """Seconds a step claimed ahead may wait for a slot before it is given back."""
        return max(GIVE_BACK_MIN_S, GIVE_BACK_RUNS * (self._recent_run_s or 0.0))

    def room(self, slot_taken: Mapping[str, float]) -> int:
        """How many steps a claim may take beyond the free slots: none before a handler has
        run, while they run long on average, or while one has held its slot (monotonic
        time it took it, in `slot_taken`) longer than a waiting step may wait. Else what
        the line has room for: PREFETCH_BELOW_S of handlers per slot, in whole capacities
        from one to LINE_CAPACITIES."""
        recent = self._recent_run_s
        if not self._enabled or recent is None or recent >= PREFETCH_BELOW_S:
            return 0
        if slot_taken and time.monotonic() - min(slot_taken.values()) > self.give_back_after:
            return 0
        capacities = LINE_CAPACITIES
        if recent * LINE_CAPACITIES > PREFETCH_BELOW_S:
            capacities = int(PREFETCH_BELOW_S / recent)
        return max(0, capacities * self._capacity - self.waiting)

    @property
    def waiting(self) -> int:
        """Steps in line for a slot."""
        return sum(1 for _, gate in self._line if not gate.done())

    def join(self, step_id: str) -> asyncio.Future[None]:
        """Put a step in line; returns the gate that opens when a slot is its."""
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._line.append((step_id, gate))
        return gate

    def next_in_line(self) -> str | None:
        """Open the gate of the first step still waiting and return its id; None when
        nobody waits. One whose wait ended (cancelled, given back) is passed over."""
        while self._line:
            step_id, gate = self._line.popleft()
            if not gate.done():
                gate.set_result(None)
                return step_id
        return None

    async def wait(self, gate: "asyncio.Future[None]") -> bool:
        """Wait for the gate; False, out of line, once the step waited `give_back_after`."""
        try:
            await asyncio.wait_for(gate, self.give_back_after)
        except TimeoutError:
            return False  # wait_for cancelled the gate: the line passes it over
        return True

    def ran(self, seconds: float) -> None:
        """A handler ran `seconds`: update the average."""
        recent = seconds if self._recent_run_s is None else self._recent_run_s
        self._recent_run_s = recent + (seconds - recent) * _RUN_TIME_WEIGHT
