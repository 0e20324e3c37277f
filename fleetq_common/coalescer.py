"""Group commit: many concurrent single requests, one database round trip.

Callers `await submit(item)`; items that arrive while a flush is in flight wait for the
next one, so at low load a request is flushed at once (no added latency) and under load
batches grow by themselves. Each caller gets its own item's result, or the exception
that failed the whole flush; when that exception says one item was at fault (`isolate`),
the items are flushed again one by one, so only the faulty one fails.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    """Batches concurrent `submit()` calls into calls of `flush(items) -> results`."""

    def __init__(
        self,
        flush: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        max_batch: int,
        isolate: tuple[type[Exception], ...] = (),
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._flush = flush
        self._max_batch = max_batch
        self._isolate = isolate
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """Queue `item` and wait for the flush that carries it."""
        [future] = self._enqueue([item])
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
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._drain(), name="coalescer")
        return futures

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = (
                self._queue[: self._max_batch],
                self._queue[self._max_batch :],
            )
            live = [(item, future) for item, future in batch if not future.cancelled()]
            if not live:
                continue
            try:
                results = await self._flush([item for item, _ in live])
            except Exception as exc:
                if isinstance(exc, self._isolate) and len(live) > 1:
                    for item, future in live:  # find the item at fault: one flush each
                        await self._flush_alone(item, future)
                    continue
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _flush_alone(self, item: Item, future: asyncio.Future[Result]) -> None:
        try:
            [result] = await self._flush([item])
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)
