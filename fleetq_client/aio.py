"""The asyncio client: `AsyncFleetQClient("host:50051")`, same calls as FleetQClient."""

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from types import ModuleType, TracebackType
from typing import Any, ClassVar, TypeVar, Unpack

import grpc

from fleetq_client import calls
from fleetq_client.channel import Connection
from fleetq_client.errors import FleetQClientError, Timeout, Unavailable, error_from_rpc
from fleetq_client.results import (
    CompletionOutcome,
    Health,
    LeaderInfo,
    LeasedStep,
    QueueStats,
    RecoverySummary,
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

    async def claim_steps(
        self,
        worker_id: str,
        step_types: Sequence[str],
        *,
        max_steps: int = 1,
        wait_seconds: float = 0.0,
        lease_seconds: float = 30.0,
    ) -> list[LeasedStep]:
        """Lease up to `max_steps` steps of `step_types` to `worker_id`, waiting up to
        `wait_seconds` for some when there are none (a long poll woken by submits)."""
        return await self._send(
            calls.claim(
                worker_id,
                step_types,
                max_steps=max_steps,
                wait_seconds=wait_seconds,
                lease_seconds=lease_seconds,
            )
        )

    async def complete_step(self, step_id: str, attempt: int, result: Any = None) -> str:
        """Record a leased step's result; Conflict when the attempt no longer holds it."""
        return await self._send(calls.complete(step_id, attempt, result))

    async def fail_step(
        self, step_id: str, attempt: int, error_type: str, message: str, *, retryable: bool = True
    ) -> str:
        """Record a leased step's failure; "pending" (retried) or "failed"."""
        return await self._send(
            calls.fail(step_id, attempt, error_type, message, retryable=retryable)
        )

    async def release_step(self, step_id: str, attempt: int) -> str:
        """Give a leased step back to pending without spending a retry."""
        return await self._send(calls.release(step_id, attempt))

    async def extend_lease(
        self, step_id: str, attempt: int, lease_seconds: float = 30.0
    ) -> datetime:
        """Move the lease's end to `lease_seconds` from now; returns the new end."""
        return await self._send(calls.extend_lease(step_id, attempt, lease_seconds))

    async def complete_steps(
        self, results: Sequence[tuple[str, int, Any]]
    ) -> list[CompletionOutcome]:
        """Record many (step_id, attempt, result) in one write, each answered on its own."""
        return await self._send(calls.complete_many(results))

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
            response = await method(call.request, **self._settings.call_options(call.wait))
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        return call.read(response)
