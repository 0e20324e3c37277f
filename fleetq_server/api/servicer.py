"""The FleetQService servicer: protobuf in, domain calls, protobuf out. No SQL here."""

import dataclasses
import functools
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from fleetq_common.coalescer import Coalescer
from fleetq_common.json_values import ValueBudget
from fleetq_server import __version__, errors, metrics, submission
from fleetq_server.api import (
    batch_parts,
    history,
    messages,
    step_lifecycle,
    step_listing,
    submit_answers,
    watch,
)
from fleetq_server.api.json_fields import json_object_or_text
from fleetq_server.api.offload import OFFLOAD_BYTES, collections_paused, off_loop
from fleetq_server.api.schedules import ScheduleRpcs
from fleetq_server.api.type_limits import TypeLimitRpcs
from fleetq_server.api.workers import WorkerServicer
from fleetq_server.gateway import HTTP_CODE_KEY
from fleetq_server.runtime.pod import Pod
from fleetq_server.store.records import InsertOutcome, NewStep
from fleetq_server.submission import MAX_BATCH_STEPS

if TYPE_CHECKING:
    from fleetq_server.telemetry.tracing import Tracing

IDEMPOTENCY_KEY_HEADER = "idempotency-key"
# The metadata by which a call says an HTTP gateway forwarded it.
FORWARDED_HOST_KEY = "x-forwarded-host"
_step_id = submission.check_step_id


def _metadata_value(context: Any, name: str) -> str | None:
    metadata: Iterable[tuple[str, str | bytes]] = context.invocation_metadata() or ()
    for key, value in metadata:
        if key == name:
            return value.decode() if isinstance(value, bytes) else value
    return None


def _idempotency_header(context: Any) -> str | None:
    """The `Idempotency-Key` header (gRPC: metadata), refused if no key can look like it."""
    key = _metadata_value(context, IDEMPOTENCY_KEY_HEADER)
    fits = key is None or 0 < len(key) <= submission.MAX_IDEMPOTENCY_KEY_LENGTH
    if key is not None and not (fits and key.isascii() and key.isprintable()):
        raise errors.ValidationError(
            f"Idempotency-Key header: must be 1 to {submission.MAX_IDEMPOTENCY_KEY_LENGTH} "
            "printable ASCII characters"
        )
    return key


async def _set_http_code(context: Any, code: int) -> None:
    """Ask the REST gateway for a success status other than 200 (the default, sent as
    nothing). A call forwarded by an HTTP gateway (grpc-gateway, v1 and v2, names the
    host on every call) gets it as header metadata, where grpc-gateway's forward-response
    option reads it: trailers come after it has answered. Sending headers early is one
    more transport operation per call (benchmarks/http_code_metadata.py), so a direct
    gRPC call gets it in the trailers, which ride with the status for free; FLEET-Q's own
    gateway reads either."""
    if code == 200:
        return
    metadata = ((HTTP_CODE_KEY, str(code)),)
    if _metadata_value(context, FORWARDED_HOST_KEY) is None:
        context.set_trailing_metadata(metadata)
    else:
        await context.send_initial_metadata(metadata)


def _submit_request(
    request: pb.SubmitStepRequest,
    header_key: str | None,
    budget: ValueBudget,
    default_expiry_s: float,
) -> submission.SubmitRequest:
    """The domain's view of one submit; the body's idempotency key wins over the header,
    and its pending expiry over the pod's FLEETQ_PENDING_EXPIRY. (This runs per step of
    a batch: the bound HasField and the inline presence checks took 7% off the
    instructions of preparing a plain step, by callgrind.)"""
    has = request.HasField
    return submission.SubmitRequest(
        type=request.type,
        args=json_object_or_text(request, "args", request.args_json, budget),
        metadata=json_object_or_text(request, "metadata", request.metadata_json, budget),
        priority=request.priority,
        max_retries=request.max_retries if has("max_retries") else None,
        idempotency_key=request.idempotency_key if has("idempotency_key") else header_key,
        pending_expiry_s=(
            request.pending_expiry_seconds if has("pending_expiry_seconds") else default_expiry_s
        ),
        run_at=_run_at(request) if has("run_at") else None,
        delay_s=request.delay_seconds if has("delay_seconds") else None,
    )


def _plain_step(request: pb.SubmitStepRequest, budget: ValueBudget, step_id: str) -> NewStep | None:
    """A submit of type, args, metadata and priority alone, prepared as `_submit_request`
    and `prepare_step` would with fewer stops on the way (most steps of a bulk batch);
    None for any other submit."""
    has = request.HasField
    if (
        has("max_retries")
        or has("idempotency_key")
        or has("pending_expiry_seconds")
        or has("run_at")
        or has("delay_seconds")
    ):
        return None
    return submission.prepare_plain_step(
        request.type,
        json_object_or_text(request, "args", request.args_json, budget),
        json_object_or_text(request, "metadata", request.metadata_json, budget),
        request.priority,
        step_id,
    )


def _run_at(request: pb.SubmitStepRequest) -> datetime:
    """The submit's run_at (present) as an aware time; a Timestamp out of its range is the
    client's error (gRPC clients can send any seconds and nanos)."""
    try:
        return request.run_at.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise errors.ValidationError("run_at: is not a valid time") from None


_Prepared = TypeVar("_Prepared")


def _with_traceparent(prepared: list[_Prepared], tracing: "Tracing | None") -> list[_Prepared]:
    """The new steps carrying the submit span's traceparent, for their attempts' links;
    as they are when tracing is off (other items, refusals, pass unchanged)."""
    traceparent = tracing.current_traceparent() if tracing is not None else None
    if traceparent is None:
        return prepared
    return [
        dataclasses.replace(item, traceparent=traceparent) if isinstance(item, NewStep) else item  # type: ignore[misc]
        for item in prepared
    ]


class FleetQServicer(
    ScheduleRpcs, TypeLimitRpcs, WorkerServicer, fleetq_pb2_grpc.FleetQServiceServicer
):
    """Implements the RPCs over the pod's store and state. Domain errors propagate as
    exceptions; the error interceptor maps them to status codes."""

    def __init__(self, pod: Pod) -> None:
        self._pod = pod
        self._store = pod.store
        self._settings = pod.settings
        self._tracing = pod.tracing
        # Concurrent single submits share one INSERT (and one NOTIFY) per round trip.
        # A step the database refuses fails its own submit only, not the batch it shared.
        self._inserts: Coalescer[NewStep, InsertOutcome | errors.ConflictError] = Coalescer(
            self._insert_received,
            max_batch=MAX_BATCH_STEPS,
            isolate=(errors.DataRejectedError,),
        )

    async def _insert_received(
        self, steps: Sequence[NewStep]
    ) -> list[InsertOutcome | errors.ConflictError]:
        """Insert steps; when this pod runs them and has free slots, it claims them with the
        insert (or right after it) and starts them at once (see ClaimLoop.insert_and_claim)."""
        outcomes = await self._pod.claimer.insert_and_claim(steps)
        return outcomes if outcomes is not None else await self._store.step_insert_many(steps)

    async def GetHealth(self, request: pb.GetHealthRequest, context: Any) -> pb.GetHealthResponse:
        state = self._pod.state
        if not state.healthy:
            await _set_http_code(context, 503)
        return pb.GetHealthResponse(
            pod_id=state.pod_id,
            status="healthy" if state.healthy else "unhealthy",
            uptime_seconds=round(state.uptime_seconds, 3),
            current_capacity=state.current_capacity,
            max_capacity=state.max_capacity,
            is_leader=state.is_leader,
            version=__version__,
        )

    async def SubmitStep(
        self, request: pb.SubmitStepRequest, context: Any
    ) -> pb.SubmitStepResponse:
        if request.ByteSize() <= OFFLOAD_BYTES:
            return await self._submit_step(request, context, large=False)
        # Its values live until the insert is done, and then go with _submit_step's frame.
        with collections_paused():
            return await self._submit_step(request, context, large=True)

    async def _submit_step(
        self, request: pb.SubmitStepRequest, context: Any, large: bool
    ) -> pb.SubmitStepResponse:
        header_key = _idempotency_header(context)
        prepare = functools.partial(self._prepare_single, request, header_key)
        step = await off_loop(prepare) if large else prepare()
        [step] = _with_traceparent([step], self._tracing)
        outcome = await self._inserts.submit(step)
        if isinstance(outcome, errors.ConflictError):
            raise outcome
        if outcome.created:
            metrics.count_submitted(step.type, scheduled=submit_answers.is_scheduled(step))
        await _set_http_code(context, 201 if outcome.created else 200)
        return pb.SubmitStepResponse(**submit_answers.acknowledgement_fields(outcome))

    async def SubmitBatch(
        self, request: pb.SubmitBatchRequest, context: Any
    ) -> pb.SubmitBatchResponse:
        if not 1 <= len(request.steps) <= MAX_BATCH_STEPS:
            raise errors.ValidationError(f"steps: must hold 1 to {MAX_BATCH_STEPS} steps")
        if request.ByteSize() <= OFFLOAD_BYTES:
            return await self._submit_batch(request, context, large=False)
        with collections_paused():  # as in SubmitStep
            return await self._submit_batch(request, context, large=True)

    async def _submit_batch(
        self, request: pb.SubmitBatchRequest, context: Any, large: bool
    ) -> pb.SubmitBatchResponse:
        prepare = self._batch_preparer(request)
        count = len(request.steps)
        if not request.independent and batch_parts.in_parts(count):
            # Stored while it is still being prepared. A copied batch's steps are all new:
            # its answer is written while PostgreSQL inserts the last part (1.2-1.6 ms of a
            # 1,000-step call that followed the commit), and counted once it is stored.
            copied: list[tuple[pb.SubmitBatchResponse, submit_answers.NewSteps]] = []

            def acknowledge(steps: list[NewStep]) -> None:
                copied.append(submit_answers.acknowledged_new(steps))

            steps, created = await batch_parts.insert_in_parts(
                self._store, prepare, count, while_copying=acknowledge
            )
            if created is None:
                response, new_steps = copied[0]
                submit_answers.count_new(response, new_steps)
            else:
                response = submit_answers.batch_response(zip(steps, created, strict=True))
        else:
            whole = functools.partial(prepare, 0, count)
            steps = await off_loop(whole) if large else whole()
            if request.independent:
                response = await self._insert_each(steps)
            else:
                outcomes = await self._store.step_insert_many(steps, atomic=True)
                created = [o for o in outcomes if isinstance(o, InsertOutcome)]
                response = submit_answers.batch_response(zip(steps, created, strict=True))
        await _set_http_code(context, 201 if response.created_count else 200)
        return response

    async def _insert_each(self, steps: list[NewStep]) -> pb.SubmitBatchResponse:
        """An independent batch: its steps join the single submits' group commit, where a
        step the database refuses fails alone; every step gets its own outcome."""
        outcomes = await self._inserts.submit_all(steps)
        unexpected = [
            o for o in outcomes if isinstance(o, Exception) and not submit_answers.refusal(o)
        ]
        if unexpected:  # a fault of ours or the database's: the error interceptor maps it
            raise unexpected[0]
        return submit_answers.batch_response(zip(steps, outcomes, strict=True), independent=True)

    def _prepare_single(self, request: pb.SubmitStepRequest, header_key: str | None) -> NewStep:
        budget = ValueBudget(self._settings.max_json_values)
        return submission.prepare_step(
            _submit_request(request, header_key, budget, self._settings.pending_expiry)
        )

    def _batch_preparer(self, request: pb.SubmitBatchRequest) -> batch_parts.Prepare:
        """Steps [start, stop) of a batch, validated under one value budget for all of them;
        the first invalid step, named by index, refuses the whole request (independent or
        not: a request that breaks the documented rules is the client's error as a whole)."""
        budget = ValueBudget(self._settings.max_json_values)
        step_ids = submission.new_step_ids(len(request.steps))
        expiry = self._settings.pending_expiry
        plain = not expiry  # a pod's default pending expiry makes no submit plain
        # Read here, on the loop: a large batch is prepared on the offload thread, which
        # does not see the call's span (run_in_executor copies no context).
        traceparent = self._tracing.current_traceparent() if self._tracing is not None else None

        def prepare(start: int, stop: int) -> list[NewStep]:
            steps = []
            for index, item in enumerate(request.steps[start:stop], start):
                try:
                    step = _plain_step(item, budget, step_ids[index]) if plain else None
                    if step is None:
                        submit = _submit_request(item, None, budget, expiry)
                        step = submission.prepare_step(submit, step_ids[index])
                except errors.ValidationError as exc:
                    raise errors.ValidationError(f"steps[{index}].{exc}") from None
                step.traceparent = traceparent
                steps.append(step)
            return steps

        return prepare

    async def GetStepStatus(
        self, request: pb.GetStepStatusRequest, context: Any
    ) -> pb.GetStepStatusResponse:
        step = await self._store.step_get(_step_id(request.step_id))
        build = functools.partial(messages.step_status, step)
        return await off_loop(build) if messages.is_large(step) else build()

    async def GetIdempotencyKey(
        self, request: pb.GetIdempotencyKeyRequest, context: Any
    ) -> pb.GetIdempotencyKeyResponse:
        step = await self._store.step_get(_step_id(request.step_id))
        return pb.GetIdempotencyKeyResponse(
            step_id=step.step_id, idempotency_key=step.idempotency_key
        )

    async def WatchStep(
        self, request: pb.WatchStepRequest, context: Any
    ) -> AsyncIterator[pb.GetStepStatusResponse]:
        async for status in watch.step_statuses(self._pod.watches, _step_id(request.step_id)):
            yield status

    async def ListSteps(self, request: pb.ListStepsRequest, context: Any) -> pb.ListStepsResponse:
        return await step_listing.list_steps(self._store, request)

    async def CancelStep(
        self, request: pb.CancelStepRequest, context: Any
    ) -> pb.CancelStepResponse:
        return await step_lifecycle.cancel_step(self._store, _step_id(request.step_id))

    async def RetryStep(self, request: pb.RetryStepRequest, context: Any) -> pb.RetryStepResponse:
        return await step_lifecycle.retry_step(self._store, _step_id(request.step_id))

    async def GetLeader(self, request: pb.GetLeaderRequest, context: Any) -> pb.GetLeaderResponse:
        return messages.leader(await self._store.leader_get(self._settings.dead_pod_threshold))

    async def GetQueueStats(
        self, request: pb.GetQueueStatsRequest, context: Any
    ) -> pb.GetQueueStatsResponse:
        stats = await self._store.queue_stats(self._settings.dead_pod_threshold)
        response = await self._with_limits(messages.queue_stats(stats))
        response.workers.extend(await self.worker_list())
        return response

    async def GetThroughput(
        self, request: pb.GetThroughputRequest, context: Any
    ) -> pb.GetThroughputResponse:
        return await history.get_throughput(self._store, request)

    async def ListRecoveryCycles(
        self, request: pb.ListRecoveryCyclesRequest, context: Any
    ) -> pb.ListRecoveryCyclesResponse:
        return await history.list_recovery_cycles(self._store, request)

    async def RunRecovery(
        self, request: pb.RunRecoveryRequest, context: Any
    ) -> pb.RunRecoveryResponse:
        outcome, ran = await self._pod.recovery.run_manual(
            force=request.force, dry_run=request.dry_run
        )
        if request.dry_run:
            status, message = "dry_run", "Dry run: nothing was changed"
        elif ran:
            status, message = "completed", "Manual recovery cycle completed successfully"
        else:
            status = "skipped"
            message = "A recovery cycle finished under a second ago; use force to run again"
        return pb.RunRecoveryResponse(
            status=status,
            message=message,
            recovery_summary=messages.recovery_summary(outcome),
        )
