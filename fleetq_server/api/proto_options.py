"""What the generic gateway's OpenAPI document cannot read from descriptor types, read from
FLEET-Q's own proto options once at start-up and passed in at composition:
`(fleetq.v1.http_statuses)` per RPC and `(fleetq.v1.rules)` per request field."""

from collections.abc import Iterable
from types import MappingProxyType
from typing import Any

from fleetq.v1 import fleetq_pb2
from google.protobuf.descriptor import Descriptor, ServiceDescriptor

from fleetq_server.gateway.openapi import Statuses


def method_statuses(service: ServiceDescriptor) -> dict[str, Statuses]:
    """Each annotated RPC's REST statuses, keyed by full RPC name."""
    result: dict[str, Statuses] = {}
    for method in service.methods:
        options = method.GetOptions()
        if not options.HasExtension(fleetq_pb2.http_statuses):
            continue
        declared = options.Extensions[fleetq_pb2.http_statuses]
        success = {status.code: status.description for status in declared.success}
        result[method.full_name] = Statuses(
            success=MappingProxyType(success or {200: "OK"}), errors=tuple(declared.errors)
        )
    return result


def field_rules_schema(service: ServiceDescriptor) -> dict[str, dict[str, Any]]:
    """JSON Schema keywords for every request field with rules, keyed by full field name."""
    result: dict[str, dict[str, Any]] = {}
    for message in _messages(method.input_type for method in service.methods):
        for field in message.fields:
            options = field.GetOptions()
            if options.HasExtension(fleetq_pb2.rules):
                schema = rules_schema(options.Extensions[fleetq_pb2.rules])
                if schema:
                    result[field.full_name] = schema
    return result


def rules_schema(rules: fleetq_pb2.FieldRules) -> dict[str, Any]:
    """The JSON Schema keywords saying what `rules` say (an unset bound says nothing)."""
    schema: dict[str, Any] = {}
    for keyword, value in (
        ("minLength", rules.min_length),
        ("maxLength", rules.max_length),
        ("pattern", rules.pattern),
        ("minItems", rules.min_items),
        ("maxItems", rules.max_items),
    ):
        if value:
            schema[keyword] = value
    if rules.HasField("minimum"):
        schema["minimum"] = rules.minimum
    if rules.HasField("maximum"):
        schema["maximum"] = rules.maximum
    return schema


def _messages(roots: Iterable[Descriptor]) -> list[Descriptor]:
    """The messages reachable from `roots` (each once; recursive messages stop)."""
    seen: dict[str, Descriptor] = {}
    stack = list(roots)
    while stack:
        message = stack.pop()
        if message.full_name in seen:
            continue
        seen[message.full_name] = message
        stack.extend(f.message_type for f in message.fields if f.message_type is not None)
    return list(seen.values())


def openapi_options(service: ServiceDescriptor) -> dict[str, Any]:
    """`openapi_document`'s `statuses` and `field_rules` for a FLEET-Q service."""
    return {"statuses": method_statuses(service), "field_rules": field_rules_schema(service)}
