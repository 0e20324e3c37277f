"""Group commit: many concurrent single requests, one database round trip.

Callers `await submit(item)`; items that arrive while `max_in_flight` flushes are under way
wait for the next one, so at low load a request is flushed at once (no added latency) and
under load batches grow by themselves. Each caller gets its own item's result, or the exception
that failed the whole flush; when that exception says one item was at fault (`isolate`),
the batch is flushed again in halves, down to single items, so only the faulty one fails
and its neighbours pay a few flushes rather than one each.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    """Batches concurrent `submit()` calls into calls of `flush(items) -> results`.

    A batch holds at most `max_batch` items and, when `size` is given, items whose sizes
    sum to at most `max_size`; an item larger than that alone is flushed alone (so it
    meets its own error, not its neighbours').

    With `max_in_flight` 1, an item that arrives during a flush waits for all of it. With
    more, an item that arrives alone while fewer flushes are under way goes at once (its
    wait would be the whole round trip of its predecessor); items that queue behind it go
    together in the next flush, and a flusher that ends beside another leaves the queue to
    it, so concurrent callers still share flushes as with one.

    With `linger_turns`, a new flusher lets that many event loop turns pass before it takes
    its batch: items that become ready in one burst, a few callbacks apart (the outcomes of
    steps launched together), go in one flush instead of the first alone."""

    def __init__(
        self,
        flush: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        max_batch: int,
        isolate: tuple[type[Exception], ...] = (),
        *,
        size: Callable[[Item], int] | None = None,
        max_size: int = 0,
        max_in_flight: int = 1,
        linger_turns: int = 0,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if linger_turns < 0:
            raise ValueError("linger_turns must not be negative")
        if size is not None and max_size < 1:
            raise ValueError("max_size must be at least 1 when size is given")
        self._flush = flush
        self._max_batch = max_batch
        self._isolate = isolate
        self._size = size
        self._max_size = max_size
        self._max_in_flight = max_in_flight
        self._linger_turns = linger_turns
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flushers: set[asyncio.Task[None]] = set()
        # A flusher created that has not run yet: it takes whatever queues meanwhile, so
        # another would only find the queue empty.
        self._starting: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """Queue `item` and wait for the flush that carries it."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))  # the one-item path, without _enqueue's lists
        self._start_flusher()
        return await future

    async def submit_all(self, items: Sequence[Item]) -> list[Result | Exception]:
        """Queue `items` together (one flush carries up to max_batch of them) and wait for
        all: each one's result, or the exception that failed it."""
        if not items:
            return []  # asyncio.wait refuses an empty set
        futures = self._enqueue(items)
        try:
            await asyncio.wait(futures)
        finally:
            for future in futures:  # a cancelled caller's items are skipped by the flush
                future.cancel()
        return [future.exception() or future.result() for future in futures]  # type: ignore[misc]

    def _enqueue(self, items: Sequence[Item]) -> list[asyncio.Future[Result]]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Result]] = [loop.create_future() for _ in items]
        self._queue.extend(zip(items, futures, strict=True))
        self._start_flusher()
        return futures

    def _start_flusher(self) -> None:
        # done(), not the done callbacks, which run a turn later: a flusher that has just
        # returned must not hold back the item queued meanwhile.
        if self._starting is not None and not self._starting.done():
            return
        busy = self._busy()
        # Beside a flush under way, only a lone item goes at once: items queued before it
        # wait for a flush to end, and it goes with them.
        if busy >= self._max_in_flight or (busy and len(self._queue) > 1):
            return
        self._starting = flusher = asyncio.create_task(self._drain(), name="coalescer")
        self._flushers.add(flusher)
        flusher.add_done_callback(self._flushers.discard)

    def _busy(self) -> int:
        return sum(not flusher.done() for flusher in self._flushers)

    async def _drain(self) -> None:
        # While it lingers this flusher is still the one starting: items queued meanwhile
        # wait for it instead of starting another.
        for _ in range(self._linger_turns):
            await asyncio.sleep(0)
        self._starting = None
        while self._queue:
            count = self._batch_length()
            batch, self._queue = self._queue[:count], self._queue[count:]
            await self._flush_entries(batch)
            if self._busy() > 1:  # another flusher, under way, takes what queued meanwhile
                return

    def _batch_length(self) -> int:
        """How many queued items the next flush takes: up to max_batch, and within
        max_size unless the first item alone exceeds it."""
        count = min(len(self._queue), self._max_batch)
        if self._size is None:
            return count
        total = 0
        for index in range(count):
            total += self._size(self._queue[index][0])
            if total > self._max_size:
                return max(index, 1)
        return count

    async def _flush_entries(self, entries: Sequence[tuple[Item, asyncio.Future[Result]]]) -> None:
        """Flush the entries whose callers still wait; settle each one's future. An
        `isolate` failure of several splits them in halves, each flushed on its own."""
        live = [(item, future) for item, future in entries if not future.cancelled()]
        if not live:
            return
        try:
            results = await self._flush([item for item, _ in live])
        except Exception as exc:
            if isinstance(exc, self._isolate) and len(live) > 1:
                half = len(live) // 2
                await self._flush_entries(live[:half])
                await self._flush_entries(live[half:])
                return
            for _, future in live:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(live, results, strict=True):
            if not future.done():
                future.set_result(result)
