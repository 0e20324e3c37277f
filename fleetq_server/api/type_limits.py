"""The limit admin RPCs (SetTypeLimit, ListTypeLimits, DeleteTypeLimit), and the limits'
part of the queue statistics; the servicer mixes `TypeLimitRpcs` in."""

from typing import Any, Literal

from fleetq.v1 import fleetq_pb2 as pb

from fleetq_server.limits import validated_limit
from fleetq_server.store.ports import TypeLimitPort
from fleetq_server.store.records import TypeLimit, TypeLimitRecord


def type_limit_message(record: TypeLimitRecord) -> pb.TypeLimit:
    """A stored limit as the API shows it."""
    limit = record.limit
    return pb.TypeLimit(
        type=limit.step_type,
        max_concurrency=limit.max_concurrency,
        rate_per_second=limit.rate_per_second,
        burst=limit.burst,
        in_flight=record.in_flight,
        source=record.source,
    )


def _optional(
    request: pb.SetTypeLimitRequest,
    field: Literal["max_concurrency", "rate_per_second", "burst"],
) -> Any:
    return getattr(request, field) if request.HasField(field) else None


class TypeLimitRpcs:
    """The limit RPCs, for the servicer to mix in."""

    _store: Any

    @property
    def _limits(self) -> TypeLimitPort:
        store: TypeLimitPort = self._store
        return store

    async def SetTypeLimit(
        self, request: pb.SetTypeLimitRequest, context: Any
    ) -> pb.SetTypeLimitResponse:
        limit = validated_limit(
            TypeLimit(
                step_type=request.type,
                max_concurrency=_optional(request, "max_concurrency"),
                rate_per_second=_optional(request, "rate_per_second"),
                burst=_optional(request, "burst"),
            )
        )
        record = await self._limits.type_limit_put(limit)
        return pb.SetTypeLimitResponse(limit=type_limit_message(record))

    async def ListTypeLimits(
        self, request: pb.ListTypeLimitsRequest, context: Any
    ) -> pb.ListTypeLimitsResponse:
        records = await self._limits.type_limit_list()
        return pb.ListTypeLimitsResponse(limits=[type_limit_message(r) for r in records])

    async def DeleteTypeLimit(
        self, request: pb.DeleteTypeLimitRequest, context: Any
    ) -> pb.DeleteTypeLimitResponse:
        await self._limits.type_limit_delete(request.type)
        return pb.DeleteTypeLimitResponse()

    async def _with_limits(self, response: pb.GetQueueStatsResponse) -> pb.GetQueueStatsResponse:
        """The queue statistics with every limited type's limit and claimed steps."""
        for record in await self._limits.type_limit_list():
            response.type_limits[record.limit.step_type].CopyFrom(type_limit_message(record))
        return response
