"""The limit admin calls, written once like calls.py: the RPC, its request, the reader."""

from dataclasses import dataclass

from fleetq.v1 import fleetq_pb2 as pb

from fleetq_client.calls import Call


@dataclass(frozen=True, slots=True)
class TypeLimit:
    """A step type's fleet-wide limit and its claimed steps now; None: no such limit."""

    type: str
    max_concurrency: int | None
    rate_per_second: float | None
    burst: int | None
    in_flight: int
    source: str


def type_limit(message: pb.TypeLimit) -> TypeLimit:
    """A TypeLimit message as a result."""
    return TypeLimit(
        type=message.type,
        max_concurrency=message.max_concurrency if message.HasField("max_concurrency") else None,
        rate_per_second=message.rate_per_second if message.HasField("rate_per_second") else None,
        burst=message.burst if message.HasField("burst") else None,
        in_flight=message.in_flight,
        source=message.source,
    )


def put(
    step_type: str,
    *,
    max_concurrency: int | None = None,
    rate_per_second: float | None = None,
    burst: int | None = None,
) -> Call[TypeLimit]:
    """Set a type's limit: at most `max_concurrency` claimed fleet-wide, and claims no faster
    than `rate_per_second` (bursts of `burst`, default the rate rounded up)."""
    request = pb.SetTypeLimitRequest(
        type=step_type,
        max_concurrency=max_concurrency,
        rate_per_second=rate_per_second,
        burst=burst,
    )
    return Call("SetTypeLimit", request, lambda response: type_limit(response.limit))


def listing() -> Call[list[TypeLimit]]:
    """Every limit, by type."""
    return Call(
        "ListTypeLimits",
        pb.ListTypeLimitsRequest(),
        lambda response: [type_limit(limit) for limit in response.limits],
    )


def delete(step_type: str) -> Call[None]:
    """Lift a type's limit; NotFound when it has none."""
    return Call("DeleteTypeLimit", pb.DeleteTypeLimitRequest(type=step_type), lambda _: None)
