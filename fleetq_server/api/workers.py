"""The worker RPCs: leased claims for workers outside the pods, and their fenced outcomes
and lease extensions. Protobuf in, domain calls, protobuf out; no SQL here."""

import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fleetq.v1 import fleetq_pb2 as pb
from google.protobuf import timestamp_pb2

from fleetq_common.json_values import TooManyValues, ValueBudget, fill_struct, value_to_python
from fleetq_server import errors, metrics, submission
from fleetq_server.api.messages import timestamp
from fleetq_server.runtime.pod import Pod
from fleetq_server.runtime.remote_claims import ClaimRequest
from fleetq_server.runtime.retry_policy import RetryPolicy
from fleetq_server.store.records import LeasedStep, LeaseOutcome
from fleetq_server.store.storable import storable_json, storable_text
from fleetq_server.submission import check_step_id, rules_of

_CLAIM = pb.ClaimStepsRequest
_WORKER_ID = rules_of(_CLAIM, "worker_id")
_TYPES = rules_of(_CLAIM, "types")
_MAX_STEPS = rules_of(_CLAIM, "max_steps")
_WAIT = rules_of(_CLAIM, "wait_seconds")
_LEASE = rules_of(_CLAIM, "lease_seconds")
_COMPLETIONS = rules_of(pb.CompleteStepsRequest, "completions")
_WORKER_ID_PATTERN = re.compile(_WORKER_ID.pattern)
DEFAULT_MAX_STEPS = 1
DEFAULT_LEASE_S = 30.0
# The most retries a step can have (SubmitStepRequest.max_retries): one backoff each.
_MAX_RETRIES = submission.MAX_RETRIES_RANGE[1] or 0
# Workers /admin/queue lists: those seen within the last hour, or holding leases.
WORKERS_SEEN_WITHIN_S = 3600.0
MAX_WORKERS_LISTED = 100
# The stored result of a completion that sets none, as converting it would make it.
_NULL_JSON = storable_json(None)
# Characters of a worker's error type and message kept.
MAX_ERROR_TYPE_CHARS = 256
MAX_ERROR_MESSAGE_CHARS = 8192


def _in_range(name: str, value: float, low: float, high: float) -> float:
    if not low <= value <= high:
        raise errors.ValidationError(f"{name}: must be between {low:g} and {high:g}")
    return value


def _lease_seconds(request: Any) -> float:
    if not request.HasField("lease_seconds"):
        return DEFAULT_LEASE_S
    return _in_range("lease_seconds", request.lease_seconds, _LEASE.minimum, _LEASE.maximum)


def claim_request(request: pb.ClaimStepsRequest) -> ClaimRequest:
    """A ClaimSteps call checked against its proto rules; each error names its field."""
    worker_id = request.worker_id
    if not _WORKER_ID.min_length <= len(worker_id) <= _WORKER_ID.max_length or not (
        _WORKER_ID_PATTERN.fullmatch(worker_id)
    ):
        raise errors.ValidationError(
            f"worker_id: must be 1 to {_WORKER_ID.max_length} letters, digits or _.:@-"
        )
    if not _TYPES.min_items <= len(request.types) <= _TYPES.max_items:
        raise errors.ValidationError(f"types: must hold 1 to {_TYPES.max_items} step types")
    for index, step_type in enumerate(request.types):
        try:
            submission.check_type(step_type)
        except errors.ValidationError as exc:
            raise errors.ValidationError(f"types[{index}].{exc}") from None
    max_steps = request.max_steps if request.HasField("max_steps") else DEFAULT_MAX_STEPS
    _in_range("max_steps", max_steps, _MAX_STEPS.minimum, _MAX_STEPS.maximum)
    wait_s = _in_range("wait_seconds", request.wait_seconds, _WAIT.minimum, _WAIT.maximum)
    return ClaimRequest(
        worker_id=worker_id,
        step_types=list(dict.fromkeys(request.types)),
        max_steps=max_steps,
        wait_s=wait_s,
        lease_s=_lease_seconds(request),
    )


def claim_answer(steps: Sequence[LeasedStep]) -> pb.ClaimStepsResponse:
    """The leased steps as the worker receives them, built in place: each step added
    to the answer and filled there (nested messages built apart are copied in again), and
    each distinct lease end converted once (one claim's steps share theirs)."""
    answer = pb.ClaimStepsResponse()
    add = answer.steps.add
    stamps: dict[datetime, timestamp_pb2.Timestamp] = {}
    for step in steps:
        item = add(
            step_id=step.step_id,
            attempt=step.attempt,
            type=step.type,
            idempotency_key=step.idempotency_key,
            retry_count=step.retry_count,
            max_retries=step.max_retries,
        )
        fill_struct(item.args, step.args)
        fill_struct(item.metadata, step.metadata)
        stamp = stamps.get(step.lease_expires_at)
        if stamp is None:
            stamp = stamps[step.lease_expires_at] = timestamp(step.lease_expires_at)
        item.lease_expires_at.CopyFrom(stamp)
    return answer


def _result_json(request: pb.CompleteStepRequest | pb.StepCompletion, budget: ValueBudget) -> str:
    """The result as the JSON text to store (null when unset)."""
    if not request.HasField("result"):
        budget.spend()  # what converting the unset value would have spent
        return _NULL_JSON
    try:
        return storable_json(value_to_python(request.result, budget))
    except TooManyValues:
        raise errors.ValidationError(
            f"result: may hold at most {budget.limit} JSON values per request"
        ) from None
    except ValueError as exc:
        raise errors.ValidationError(f"result: {exc}") from None


def _answer(answer: str | errors.FleetQError) -> str:
    """A single write's new status, or its refusal raised."""
    if isinstance(answer, errors.FleetQError):
        outcome = "not_found" if isinstance(answer, errors.NotFoundError) else "conflict"
        metrics.REMOTE_OUTCOMES.labels(outcome).inc()
        raise answer
    metrics.REMOTE_OUTCOMES.labels(answer).inc()
    return answer


class WorkerServicer:
    """The worker RPCs of FleetQServicer (mixed into it), over the pod's leased claims."""

    _pod: Pod

    def _backoffs(self) -> list[float]:
        """The backoff before each retry number, as the pod's handlers get (RetryPolicy)."""
        settings = self._pod.settings
        policy = RetryPolicy(settings.retry_backoff_base, settings.retry_backoff_max)
        return [policy.delay(count) for count in range(_MAX_RETRIES + 1)]

    async def worker_list(self) -> list[pb.WorkerInfo]:
        """The remote workers /admin/queue shows."""
        workers = await self._pod.store.worker_list(WORKERS_SEEN_WITHIN_S, MAX_WORKERS_LISTED)
        return [
            pb.WorkerInfo(
                worker_id=w.worker_id,
                types=w.types,
                in_flight=w.in_flight,
                last_seen=timestamp(w.last_seen_ts),
            )
            for w in workers
        ]

    async def ClaimSteps(
        self, request: pb.ClaimStepsRequest, context: Any
    ) -> pb.ClaimStepsResponse:
        claim = claim_request(request)
        steps = await self._pod.remote_claims.claim(claim, context.time_remaining)
        return claim_answer(steps)

    async def CompleteStep(
        self, request: pb.CompleteStepRequest, context: Any
    ) -> pb.CompleteStepResponse:
        step_id = check_step_id(request.step_id)
        result = _result_json(request, ValueBudget(self._pod.settings.max_json_values))
        outcome = LeaseOutcome(step_id, request.attempt, result_json=result)
        [answer] = await self._pod.store.step_lease_finish_many([outcome], [])
        return pb.CompleteStepResponse(step_id=step_id, status=_answer(answer))

    async def FailStep(self, request: pb.FailStepRequest, context: Any) -> pb.FailStepResponse:
        step_id = check_step_id(request.step_id)
        error = {
            "type": storable_text(request.error.type[:MAX_ERROR_TYPE_CHARS]) or "WorkerError",
            "message": storable_text(request.error.message[:MAX_ERROR_MESSAGE_CHARS]),
        }
        retryable = request.retryable if request.HasField("retryable") else True
        outcome = LeaseOutcome(step_id, request.attempt, error=error, retryable=retryable)
        [answer] = await self._pod.store.step_lease_finish_many([outcome], self._backoffs())
        status = _answer(answer)
        step = await self._pod.store.step_get(step_id)
        return pb.FailStepResponse(step_id=step_id, status=status, retry_count=step.retry_count)

    async def ExtendLease(
        self, request: pb.ExtendLeaseRequest, context: Any
    ) -> pb.ExtendLeaseResponse:
        step_id = check_step_id(request.step_id)
        lease = await self._pod.store.step_lease_extend(
            step_id, request.attempt, _lease_seconds(request)
        )
        return pb.ExtendLeaseResponse(
            step_id=step_id,
            lease_expires_at=timestamp(lease.lease_expires_at),
            cancel_requested=lease.cancel_requested,
        )

    async def ReleaseStep(
        self, request: pb.ReleaseStepRequest, context: Any
    ) -> pb.ReleaseStepResponse:
        step_id = check_step_id(request.step_id)
        [answer] = await self._pod.store.step_lease_release([(step_id, request.attempt)])
        if isinstance(answer, errors.FleetQError):
            raise answer
        metrics.REMOTE_OUTCOMES.labels("released").inc()
        return pb.ReleaseStepResponse(step_id=step_id, status=answer)

    async def CompleteSteps(
        self, request: pb.CompleteStepsRequest, context: Any
    ) -> pb.CompleteStepsResponse:
        if not _COMPLETIONS.min_items <= len(request.completions) <= _COMPLETIONS.max_items:
            raise errors.ValidationError(
                f"completions: must hold 1 to {_COMPLETIONS.max_items} results"
            )
        budget = ValueBudget(self._pod.settings.max_json_values)
        outcomes = []
        for index, item in enumerate(request.completions):
            try:
                step_id = check_step_id(item.step_id)
                outcomes.append(LeaseOutcome(step_id, item.attempt, _result_json(item, budget)))
            except errors.FleetQError as exc:
                raise errors.ValidationError(f"completions[{index}].{exc}") from None
        answers = await self._pod.store.step_lease_finish_many(outcomes, [])
        response = pb.CompleteStepsResponse()
        add = response.outcomes.add
        counts: Counter[str] = Counter()
        for outcome, answer in zip(outcomes, answers, strict=True):
            if isinstance(answer, errors.FleetQError):
                status = "not_found" if isinstance(answer, errors.NotFoundError) else "conflict"
                add(step_id=outcome.step_id, status=status, detail=str(answer))
            else:
                status = answer
                add(step_id=outcome.step_id, status=status)
            counts[status] += 1
        # One increment per status, not per step: each takes the counter's lock.
        for status, count in counts.items():
            metrics.child(metrics.REMOTE_OUTCOMES, status).inc(count)
        return response
