"""The asyncio client: `AsyncFleetQClient("host:50051")`, same calls as FleetQClient."""

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from types import ModuleType, TracebackType
from typing import Any, ClassVar, TypeVar, Unpack

import grpc

from fleetq_client import calls
from fleetq_client.channel import Connection
from fleetq_client.errors import FleetQClientError, Timeout, Unavailable, error_from_rpc
from fleetq_client.results import (
    Health,
    LeaderInfo,
    QueueStats,
    RecoverySummary,
    StepPage,
    StepStatus,
    SubmitResult,
)

T = TypeVar("T")


class AsyncFleetQClient(Connection):
    """Talks gRPC to one FLEET-Q pod from asyncio code. Failures raise
    `fleetq_client.errors.FleetQClientError` subclasses. Use `async with`, or await
    `close()`."""

    _channels: ClassVar[ModuleType] = grpc.aio

    async def submit(
        self, step_type: str, args: Mapping[str, Any], **options: Unpack[calls.SubmitOptions]
    ) -> SubmitResult:
        """Submit a step with `args` (a JSON object); options: metadata, priority,
        max_retries, idempotency_key (a repeat with the same key returns the original)."""
        return await self._send(calls.submit(step_type, args, **options))

    async def status(self, step_id: str) -> StepStatus:
        """A step's state, payload, and result or last error; NotFound if there is none."""
        return await self._send(calls.status(step_id))

    async def watch(self, step_id: str, timeout: float | None = None) -> AsyncIterator[StepStatus]:  # noqa: ASYNC109 - a deadline of the call, as in FleetQClient.watch
        """The step's state now, then each change as the pod pushes it (no polling),
        ending after completed, failed or cancelled; Timeout after `timeout` seconds
        (None: no limit). NotFound if there is no such step."""
        call = calls.watch(step_id)
        options = {**self._settings.call_options(), "timeout": timeout}
        responses = self._stub.WatchStep(call.request, **options)
        try:
            async for response in responses:
                yield call.read(response)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        finally:
            responses.cancel()  # a watcher that stops early frees the pod's stream

    async def wait(
        self,
        step_id: str,
        timeout: float = 60.0,  # noqa: ASYNC109 - the same signature as FleetQClient.wait
        *,
        poll_interval: float = 0.2,
        on_change: Callable[[StepStatus], None] | None = None,
    ) -> StepStatus:
        """Follow the step until it is completed, failed or cancelled; Timeout after
        `timeout` seconds. `on_change` sees every new (status, retry_count) along the way.
        Changes are pushed (`watch`); a pod older than WatchStep is polled every
        `poll_interval` seconds instead."""
        progress = calls.StepWatch(step_id, timeout, poll_interval, on_change)
        try:
            async for step in self.watch(step_id, progress.remaining()):
                if progress.finished(step):
                    return step
        except Timeout:
            raise progress.timed_out() from None
        except FleetQClientError as error:
            if error.code != grpc.StatusCode.UNIMPLEMENTED:
                raise
            # Polling a remote server: there is no local event to wait on.
            while not progress.finished(step := await self.status(step_id)):  # noqa: ASYNC110
                await asyncio.sleep(progress.pause())
            return step
        raise Unavailable(f"the watch of step {step_id} ended before the step finished")

    async def list_steps(self, **filters: Unpack[calls.ListFilters]) -> StepPage:
        """One page of steps, newest first (see ListFilters; pass next_page_token back)."""
        return await self._send(calls.list_steps(**filters))

    async def cancel(self, step_id: str) -> StepStatus:
        """Cancel a pending step, or ask a claimed one to stop; the step as it now stands."""
        return await self._send(calls.cancel(step_id))

    async def retry(self, step_id: str) -> StepStatus:
        """Put a failed or cancelled step back in the queue with a fresh retry budget."""
        return await self._send(calls.retry(step_id))

    async def queue_stats(self) -> QueueStats:
        """Queue statistics."""
        return await self._send(calls.queue_stats())

    async def leader(self) -> LeaderInfo:
        """The leader election."""
        return await self._send(calls.leader())

    async def recover(self, *, dry_run: bool = False, force: bool = False) -> RecoverySummary:
        """Run a recovery cycle; PermissionDenied unless this pod leads."""
        return await self._send(calls.recover(dry_run=dry_run, force=force))

    async def health(self) -> Health:
        """This pod's health."""
        return await self._send(calls.health())

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close(None)

    async def __aenter__(self) -> "AsyncFleetQClient":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _send(self, call: calls.Call[T]) -> T:
        method = getattr(self._stub, call.method)
        try:
            response = await method(call.request, **self._settings.call_options())
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        return call.read(response)
