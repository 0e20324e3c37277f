"""The asyncio client: `AsyncFleetQClient("host:50051")`, same calls as FleetQClient."""

import asyncio
import collections
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from types import ModuleType, TracebackType
from typing import Any, ClassVar, TypeVar, Unpack

import grpc
from fleetq.v1 import fleetq_pb2 as pb

from fleetq_client import calls, history_calls, limit_calls, schedule_calls
from fleetq_client.channel import DEFAULT_TARGET, DEFAULT_TIMEOUT_S, Connection
from fleetq_client.errors import (
    FleetQClientError,
    InvalidArgument,
    Timeout,
    Unavailable,
    error_from_rpc,
)
from fleetq_client.history_calls import RecoveryCyclePage, ThroughputMinute
from fleetq_client.limit_calls import TypeLimit
from fleetq_client.results import (
    CompletionOutcome,
    Health,
    LeaderInfo,
    LeasedStep,
    LeaseExtension,
    QueueStats,
    RecoverySummary,
    StepPage,
    StepStatus,
    SubmitBatchResult,
    SubmitResult,
)
from fleetq_client.schedule_calls import Schedule, ScheduleFields
from fleetq_common.coalescer import Coalescer

T = TypeVar("T")
# Coalesced submit calls under way at once. With one, a submit made while another travels
# waited for that one's whole round trip (at 100 submits/s, the p99 of enqueue-to-start);
# with two it goes at once, and under load the submits queued behind both still share one
# SubmitBatch.
SUBMITS_IN_FLIGHT = 2

# A SubmitBatch under way: its call, and the grpc.aio call object that answers it.
_SentBatch = tuple[calls.Call[SubmitBatchResult], Any]


async def _batch_outcome(sent: _SentBatch) -> SubmitBatchResult:
    call, answer = sent
    try:
        return call.read(await answer)
    except grpc.RpcError as error:
        raise error_from_rpc(error) from None


class AsyncFleetQClient(Connection):
    """Talks gRPC to one FLEET-Q pod from asyncio code. Failures raise
    `fleetq_client.errors.FleetQClientError` subclasses. Use `async with`, or await
    `close()`."""

    _channels: ClassVar[ModuleType] = grpc.aio

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        coalesce_submits: bool = True,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        root_certificates: bytes | None = None,
    ) -> None:
        """`coalesce_submits`: concurrent `submit()` calls share calls. A submit goes out
        at once while fewer than SUBMITS_IN_FLIGHT calls are under way; those made while
        they all are follow together in one independent SubmitBatch, each with its own
        result or error (a batch refused as invalid is sent again one submit at a time,
        so only the invalid submit fails). Off: one SubmitStep per submit."""
        super().__init__(target, token=token, timeout=timeout, root_certificates=root_certificates)
        self._submits: Coalescer[pb.SubmitStepRequest, calls.SubmitOutcome] | None = (
            Coalescer(
                self._send_submits,
                max_batch=calls.MAX_BATCH_STEPS,
                isolate=(InvalidArgument,),
                size=calls.batched_size,
                max_size=calls.MAX_COALESCED_BYTES,
                max_in_flight=SUBMITS_IN_FLIGHT,
            )
            if coalesce_submits
            else None
        )

    async def submit(
        self, step_type: str, args: Mapping[str, Any], **options: Unpack[calls.SubmitOptions]
    ) -> SubmitResult:
        """Submit a step with `args` (a JSON object); options: metadata, priority,
        max_retries, idempotency_key (a repeat with the same key returns the original)."""
        if self._submits is None:
            return await self._send(calls.submit(step_type, args, **options))
        outcome = await self._submits.submit(calls.submit_request(step_type, args, **options))
        if isinstance(outcome, FleetQClientError):
            raise outcome
        return outcome

    async def _send_submits(
        self, requests: Sequence[pb.SubmitStepRequest]
    ) -> list[calls.SubmitOutcome]:
        """One call for the submits queued together: a lone one as itself."""
        if len(requests) > 1:
            return await self._send(calls.submit_each(requests))
        try:
            return [await self._send(calls.Call("SubmitStep", requests[0], calls.submit_result))]
        except FleetQClientError as error:
            return [error]

    async def submit_batch(self, steps: Iterable[calls.StepSpec]) -> SubmitBatchResult:
        """Submit up to 1,000 steps in one call, all or nothing; each result names its
        step in the order given."""
        return await self._send(calls.submit_batch(steps))

    async def submit_many(
        self, steps: Iterable[calls.StepSpec], *, chunk_size: int = 1000, in_flight: int = 4
    ) -> list[SubmitResult]:
        """Submit any number of steps as SubmitBatch calls of `chunk_size`, keeping up to
        `in_flight` of them under way: the next chunk is built while earlier ones travel
        and are stored. Each chunk is all or nothing. On an error, chunks before the one
        that failed may be stored: give steps idempotency keys to resubmit safely."""
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        pending: collections.deque[_SentBatch] = collections.deque()
        results: list[SubmitResult] = []
        options = self._settings.call_options()
        try:
            for call in calls.batches(steps, chunk_size):
                if self._json_text.known is None:  # a first chunk learns what the pod reads
                    results.extend((await self._send(call)).steps)
                    continue
                self._json_text.prepare(call.request)
                if len(pending) == in_flight:
                    results.extend((await _batch_outcome(pending.popleft())).steps)
                pending.append((call, self._stub.SubmitBatch(call.request, **options)))
                # The call's own task sends it; one turn of the loop lets it start before
                # the next chunk is built, or every chunk would be built before any left.
                await asyncio.sleep(0)
            while pending:
                results.extend((await _batch_outcome(pending.popleft())).steps)
        finally:
            for _, sent in pending:  # an error stops the chunks not yet answered
                sent.cancel()
        return results

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

    async def throughput(self, minutes: int | None = None) -> list[ThroughputMinute]:
        """Steps completed and failed per minute over the last `minutes` (1 to 120, default
        60), oldest first, zero minutes included."""
        return await self._send(history_calls.throughput(minutes))

    async def recovery_cycles(self, page_size: int = 0, page_token: str = "") -> RecoveryCyclePage:
        """One page of recorded recovery cycles, newest first (pass next_page_token back)."""
        return await self._send(history_calls.recovery_cycles(page_size, page_token))

    async def health(self) -> Health:
        """This pod's health."""
        return await self._send(calls.health())

    async def create_schedule(self, name: str, **fields: Unpack[ScheduleFields]) -> Schedule:
        """Create a periodic schedule (cron or interval_seconds, type, args...)."""
        return await self._send(schedule_calls.create(name, **fields))

    async def update_schedule(self, name: str, **fields: Unpack[ScheduleFields]) -> Schedule:
        """Change a schedule's given fields."""
        return await self._send(schedule_calls.update(name, **fields))

    async def schedule(self, name: str) -> Schedule:
        """One schedule; NotFound when there is none."""
        return await self._send(schedule_calls.get(name))

    async def schedules(self) -> list[Schedule]:
        """Every schedule, with its next and latest fire."""
        return await self._send(schedule_calls.listing())

    async def delete_schedule(self, name: str) -> None:
        """Delete a schedule."""
        await self._send(schedule_calls.delete(name))

    async def pause_schedule(self, name: str) -> Schedule:
        """Stop a schedule firing."""
        return await self._send(schedule_calls.pause(name))

    async def resume_schedule(self, name: str) -> Schedule:
        """Let a paused schedule fire again."""
        return await self._send(schedule_calls.resume(name))

    async def set_type_limit(
        self,
        step_type: str,
        *,
        max_concurrency: int | None = None,
        rate_per_second: float | None = None,
        burst: int | None = None,
    ) -> TypeLimit:
        """Set a step type's fleet-wide limit (concurrency, rate with burst, or both)."""
        call = limit_calls.put(
            step_type,
            max_concurrency=max_concurrency,
            rate_per_second=rate_per_second,
            burst=burst,
        )
        return await self._send(call)

    async def type_limits(self) -> list[TypeLimit]:
        """Every limit with its type's claimed steps now."""
        return await self._send(limit_calls.listing())

    async def delete_type_limit(self, step_type: str) -> None:
        """Lift a step type's limit."""
        await self._send(limit_calls.delete(step_type))

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
    ) -> LeaseExtension:
        """Move the lease's end to `lease_seconds` from now; returns the new end and
        whether the step's cancel was requested (the worker should stop)."""
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
        if call.method not in calls.SUBMIT_METHODS:
            return await self._call(call)
        json_text = self._json_text
        json_text.prepare(call.request)
        try:
            answer = await self._call(call)
        except InvalidArgument:
            if not json_text.retry_as_structs(call.request):
                raise
            answer = await self._call(call)  # a request invalid anyway raises here again
            json_text.answered_as_structs()
            return answer
        json_text.answered(call.request)
        return answer

    async def _call(self, call: calls.Call[T]) -> T:
        method = getattr(self._stub, call.method)
        try:
            response = await method(call.request, **self._settings.call_options(call.wait))
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        return call.read(response)
