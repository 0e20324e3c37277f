"""The blocking client: `FleetQClient("host:50051")`."""

import collections
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import ModuleType, TracebackType
from typing import Any, ClassVar, TypeVar, Unpack

import grpc

from fleetq_client import calls, history_calls, limit_calls, schedule_calls
from fleetq_client.channel import Connection
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

T = TypeVar("T")


class FleetQClient(Connection):
    """Talks gRPC to one FLEET-Q pod (any pod: they all answer every call). Failures raise
    `fleetq_client.errors.FleetQClientError` subclasses. Use as a context manager, or
    call `close()`."""

    _channels: ClassVar[ModuleType] = grpc

    def submit(
        self, step_type: str, args: Mapping[str, Any], **options: Unpack[calls.SubmitOptions]
    ) -> SubmitResult:
        """Submit a step with `args` (a JSON object); options: metadata, priority,
        max_retries, idempotency_key (a repeat with the same key returns the original)."""
        return self._send(calls.submit(step_type, args, **options))

    def submit_batch(self, steps: Iterable[calls.StepSpec]) -> SubmitBatchResult:
        """Submit up to 1,000 steps in one call, all or nothing; each result names its
        step in the order given."""
        return self._send(calls.submit_batch(steps))

    def submit_many(
        self, steps: Iterable[calls.StepSpec], *, chunk_size: int = 1000, in_flight: int = 4
    ) -> list[SubmitResult]:
        """Submit any number of steps as SubmitBatch calls of `chunk_size`, keeping up to
        `in_flight` of them under way (gRPC futures): the next chunk is built while earlier
        ones travel and are stored. Each chunk is all or nothing. On an error, chunks before
        the one that failed may be stored: give steps idempotency keys to resubmit safely."""
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        pending: collections.deque[Any] = collections.deque()
        results: list[SubmitResult] = []
        options = self._settings.call_options()
        try:
            for call in calls.batches(steps, chunk_size):
                if self._json_text.known is None:  # a first chunk learns what the pod reads
                    results.extend(self._send(call).steps)
                    continue
                self._json_text.prepare(call.request)
                if len(pending) == in_flight:
                    results.extend(self._batch_outcome(pending.popleft()).steps)
                pending.append((call, self._stub.SubmitBatch.future(call.request, **options)))
            while pending:
                results.extend(self._batch_outcome(pending.popleft()).steps)
        finally:
            for _, future in pending:  # an error stops the chunks not yet answered
                future.cancel()
        return results

    @staticmethod
    def _batch_outcome(sent: tuple[calls.Call[SubmitBatchResult], Any]) -> SubmitBatchResult:
        call, future = sent
        try:
            return call.read(future.result())
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    def status(self, step_id: str) -> StepStatus:
        """A step's state, payload, and result or last error; NotFound if there is none."""
        return self._send(calls.status(step_id))

    def watch(self, step_id: str, timeout: float | None = None) -> Iterator[StepStatus]:
        """The step's state now, then each change as the pod pushes it (no polling),
        ending after completed, failed or cancelled; Timeout after `timeout` seconds
        (None: no limit). NotFound if there is no such step."""
        call = calls.watch(step_id)
        options = {**self._settings.call_options(), "timeout": timeout}
        responses = self._stub.WatchStep(call.request, **options)
        try:
            for response in responses:
                yield call.read(response)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        finally:
            responses.cancel()  # a watcher that stops early frees the pod's stream

    def wait(
        self,
        step_id: str,
        timeout: float = 60.0,
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
            for step in self.watch(step_id, progress.remaining()):
                if progress.finished(step):
                    return step
        except Timeout:
            raise progress.timed_out() from None
        except FleetQClientError as error:
            if error.code != grpc.StatusCode.UNIMPLEMENTED:
                raise
            while not progress.finished(step := self.status(step_id)):
                time.sleep(progress.pause())
            return step
        raise Unavailable(f"the watch of step {step_id} ended before the step finished")

    def list_steps(self, **filters: Unpack[calls.ListFilters]) -> StepPage:
        """One page of steps, newest first (see ListFilters; pass next_page_token back)."""
        return self._send(calls.list_steps(**filters))

    def cancel(self, step_id: str) -> StepStatus:
        """Cancel a pending step, or ask a claimed one to stop; the step as it now stands."""
        return self._send(calls.cancel(step_id))

    def retry(self, step_id: str) -> StepStatus:
        """Put a failed or cancelled step back in the queue with a fresh retry budget."""
        return self._send(calls.retry(step_id))

    def queue_stats(self) -> QueueStats:
        """Queue statistics."""
        return self._send(calls.queue_stats())

    def leader(self) -> LeaderInfo:
        """The leader election."""
        return self._send(calls.leader())

    def recover(self, *, dry_run: bool = False, force: bool = False) -> RecoverySummary:
        """Run a recovery cycle; PermissionDenied unless this pod leads."""
        return self._send(calls.recover(dry_run=dry_run, force=force))

    def throughput(self, minutes: int | None = None) -> list[ThroughputMinute]:
        """Steps completed and failed per minute over the last `minutes` (1 to 120, default
        60), oldest first, zero minutes included."""
        return self._send(history_calls.throughput(minutes))

    def recovery_cycles(self, page_size: int = 0, page_token: str = "") -> RecoveryCyclePage:
        """One page of recorded recovery cycles, newest first (pass next_page_token back)."""
        return self._send(history_calls.recovery_cycles(page_size, page_token))

    def health(self) -> Health:
        """This pod's health."""
        return self._send(calls.health())

    def create_schedule(self, name: str, **fields: Unpack[ScheduleFields]) -> Schedule:
        """Create a periodic schedule (cron or interval_seconds, type, args...)."""
        return self._send(schedule_calls.create(name, **fields))

    def update_schedule(self, name: str, **fields: Unpack[ScheduleFields]) -> Schedule:
        """Change a schedule's given fields."""
        return self._send(schedule_calls.update(name, **fields))

    def schedule(self, name: str) -> Schedule:
        """One schedule; NotFound when there is none."""
        return self._send(schedule_calls.get(name))

    def schedules(self) -> list[Schedule]:
        """Every schedule, with its next and latest fire."""
        return self._send(schedule_calls.listing())

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule."""
        self._send(schedule_calls.delete(name))

    def pause_schedule(self, name: str) -> Schedule:
        """Stop a schedule firing."""
        return self._send(schedule_calls.pause(name))

    def resume_schedule(self, name: str) -> Schedule:
        """Let a paused schedule fire again."""
        return self._send(schedule_calls.resume(name))

    def set_type_limit(
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
        return self._send(call)

    def type_limits(self) -> list[TypeLimit]:
        """Every limit with its type's claimed steps now."""
        return self._send(limit_calls.listing())

    def delete_type_limit(self, step_type: str) -> None:
        """Lift a step type's limit."""
        self._send(limit_calls.delete(step_type))

    def claim_steps(
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
        return self._send(
            calls.claim(
                worker_id,
                step_types,
                max_steps=max_steps,
                wait_seconds=wait_seconds,
                lease_seconds=lease_seconds,
            )
        )

    def complete_step(self, step_id: str, attempt: int, result: Any = None) -> str:
        """Record a leased step's result; Conflict when the attempt no longer holds it."""
        return self._send(calls.complete(step_id, attempt, result))

    def fail_step(
        self, step_id: str, attempt: int, error_type: str, message: str, *, retryable: bool = True
    ) -> str:
        """Record a leased step's failure; "pending" (retried) or "failed"."""
        return self._send(calls.fail(step_id, attempt, error_type, message, retryable=retryable))

    def release_step(self, step_id: str, attempt: int) -> str:
        """Give a leased step back to pending without spending a retry."""
        return self._send(calls.release(step_id, attempt))

    def extend_lease(
        self, step_id: str, attempt: int, lease_seconds: float = 30.0
    ) -> LeaseExtension:
        """Move the lease's end to `lease_seconds` from now; returns the new end and
        whether the step's cancel was requested (the worker should stop)."""
        return self._send(calls.extend_lease(step_id, attempt, lease_seconds))

    def complete_steps(self, results: Sequence[tuple[str, int, Any]]) -> list[CompletionOutcome]:
        """Record many (step_id, attempt, result) in one write, each answered on its own."""
        return self._send(calls.complete_many(results))

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> "FleetQClient":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: calls.Call[T]) -> T:
        if call.method not in calls.SUBMIT_METHODS:
            return self._call(call)
        json_text = self._json_text
        json_text.prepare(call.request)
        try:
            answer = self._call(call)
        except InvalidArgument:
            if not json_text.retry_as_structs(call.request):
                raise
            answer = self._call(call)  # a request invalid anyway raises here again
            json_text.answered_as_structs()
            return answer
        json_text.answered(call.request)
        return answer

    def _call(self, call: calls.Call[T]) -> T:
        method = getattr(self._stub, call.method)
        try:
            response = method(call.request, **self._settings.call_options(call.wait))
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        return call.read(response)
