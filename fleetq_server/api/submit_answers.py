"""Answers to submits: a step's acknowledgement, a batch's acknowledgements and refusals,
and the new steps counted once they are stored."""

import collections
from collections.abc import Iterable

from fleetq.v1 import fleetq_pb2 as pb

from fleetq_server import errors, metrics
from fleetq_server.api.status_codes import status_code_for
from fleetq_server.store.records import InsertOutcome, NewStep

# New steps by type and whether they are scheduled.
NewSteps = collections.Counter[tuple[str, bool]]


def refusal(outcome: object) -> pb.SubmitRefusal | None:
    """How an independent batch reports a step refused for its own content or key; None
    for anything else (a database outage fails the whole call, as it would a submit)."""
    if isinstance(
        outcome, errors.ValidationError | errors.ConflictError | errors.DataRejectedError
    ):
        return pb.SubmitRefusal(code=status_code_for(outcome).name, message=str(outcome))
    return None


def batch_response(
    outcomes: Iterable[tuple[NewStep, object]], independent: bool = False
) -> pb.SubmitBatchResponse:
    """Acknowledge each accepted step in `steps` (and, when `independent`, every step in
    `items`), counting new steps once per type."""
    response, created = acknowledged(outcomes, independent)
    count_new(response, created)
    return response


def acknowledged(
    outcomes: Iterable[tuple[NewStep, object]], independent: bool = False
) -> tuple[pb.SubmitBatchResponse, NewSteps]:
    """The answer's acknowledgements, and the new steps per type, not yet published
    (`count_new`: a copied batch is answered before its commit, and counted after it)."""
    response = pb.SubmitBatchResponse()
    add = response.steps.add  # add() fills in place; steps=[...] would copy each one
    created: list[NewStep] = []
    # Per step, only what differs: keyword arguments spelled out and the new steps counted
    # once at the end, where a dict of fields per step and a Counter increment per step
    # were three quarters of the answer's cost (batch_cpu.py --instructions).
    for step, outcome in outcomes:
        if isinstance(outcome, InsertOutcome):
            step_id = outcome.step_id
            message = f"Step {step_id} {VERBS[outcome.created]}"
            accepted = add(step_id=step_id, status=SUBMITTED, message=message)
            if independent:
                response.items.add(accepted=accepted)
            if outcome.created:
                created.append(step)
        else:
            response.items.add(refused=refusal(outcome))
    return response, collections.Counter([(step.type, is_scheduled(step)) for step in created])


def acknowledged_new(steps: list[NewStep]) -> tuple[pb.SubmitBatchResponse, NewSteps]:
    """`acknowledged` for steps that are all new and none scheduled (a copied batch), with
    no outcome per step to make and look into: half the cost (timeit, 1,000 steps: 1.3 ->
    0.7 ms), spent while PostgreSQL inserts the batch's last part."""
    response = pb.SubmitBatchResponse()
    add = response.steps.add
    verb = VERBS[True]
    for step in steps:
        step_id = step.step_id
        add(step_id=step_id, status=SUBMITTED, message=f"Step {step_id} {verb}")
    return response, collections.Counter([(step.type, False) for step in steps])


def count_new(response: pb.SubmitBatchResponse, new_steps: NewSteps) -> None:
    """Count stored new steps once per type, in the metrics and in the answer."""
    for (step_type, scheduled), count in new_steps.items():
        metrics.count_submitted(step_type, scheduled=scheduled, count=count)
    response.created_count = new_steps.total()


def is_scheduled(step: NewStep) -> bool:
    return step.run_at is not None or step.delay_s is not None


# An acknowledgement's status, and its message's verb by whether the step is new.
SUBMITTED = "submitted"
VERBS = {True: "submitted successfully", False: "already submitted"}


def acknowledgement_fields(outcome: InsertOutcome) -> dict[str, str]:
    return {
        "step_id": outcome.step_id,
        "status": SUBMITTED,
        "message": f"Step {outcome.step_id} {VERBS[outcome.created]}",
    }
