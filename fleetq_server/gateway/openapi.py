"""The REST API as an OpenAPI 3.1 document, generated from the service descriptor.

Built at start-up from the routes the gateway serves (`routes_for_service`: the
google.api.http rules) and the message descriptors it decodes and encodes with, so the
document cannot drift from what is served. Schemas follow the proto3 JSON mapping as the
gateway applies it: original field names; responses carry every field, with unset message
and `optional` fields as null; requests may leave out or null any field (null means unset).

What a descriptor cannot say is in two tables below, next to this generator:
`METHOD_STATUSES` (success statuses a servicer picks through `x-http-code`, errors its own
logic raises) and `FIELD_RULES` (request limits, from the constants the servicer checks).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor

from fleetq_server import submission
from fleetq_server.gateway.asgi import ASGIApp, Receive, Scope, Send
from fleetq_server.gateway.http_errors import METHOD_NOT_ALLOWED, error_body, error_types_for_status
from fleetq_server.gateway.json_codec import dumps, in_real_oneof, null_when_unset
from fleetq_server.gateway.path_templates import Literal, PathTemplate, Variable
from fleetq_server.gateway.routes import Route, routes_for_service

OPENAPI_VERSION = "3.1.0"
# Statuses every route can answer: a request the gateway or the servicer refuses (bad JSON,
# unknown field, value out of range, unknown query parameter), and database/internal errors.
COMMON_ERROR_STATUSES = (400, 500)
UNAUTHENTICATED_STATUS = 401
ADMIN_SECURITY_SCHEME = "adminToken"
_ERROR_BODY = "ErrorBody"
_WKT_PREFIX = "google.protobuf."


@dataclass(frozen=True)
class Statuses:
    """What one RPC answers over REST beyond what its descriptor says."""

    success: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({200: "OK"}))
    errors: tuple[int, ...] = ()


# The one table of per-RPC statuses (the contract's endpoints.md), keyed by full RPC name.
# `success` lists the codes the servicer sets through x-http-code (200 when absent);
# `errors` those its domain errors produce beyond COMMON_ERROR_STATUSES (see
# api/status_codes.py and http_errors.py). Admin RPCs add 401 when a token is configured.
METHOD_STATUSES: Mapping[str, Statuses] = MappingProxyType(
    {
        "fleetq.v1.FleetQService.GetHealth": Statuses(
            success={200: "The pod is healthy", 503: "The pod is unhealthy or draining"}
        ),
        "fleetq.v1.FleetQService.SubmitStep": Statuses(
            success={
                201: "The step was submitted",
                200: "A repeat of an earlier submit with the same idempotency key: its step",
            },
            errors=(409,),  # the idempotency key was used for a different payload
        ),
        "fleetq.v1.FleetQService.SubmitBatch": Statuses(
            success={
                201: "The batch was accepted and created at least one step",
                200: "Every step repeated an earlier submit with the same idempotency key",
            },
            errors=(409,),
        ),
        "fleetq.v1.FleetQService.GetStepStatus": Statuses(errors=(404,)),
        "fleetq.v1.FleetQService.GetIdempotencyKey": Statuses(errors=(404,)),
        "fleetq.v1.FleetQService.RunRecovery": Statuses(
            errors=(403, 409)  # not the leader; a recovery cycle is in progress
        ),
    }
)


def _range(bounds: tuple[int, int]) -> dict[str, int]:
    return {"minimum": bounds[0], "maximum": bounds[1]}


# The request rules the servicer enforces beyond the field types (fleetq_server.submission),
# keyed by full field name, as JSON Schema keywords: the document states the limits the code
# checks, from the same constants.
FIELD_RULES: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "fleetq.v1.SubmitStepRequest.type": {
            "minLength": 1,
            "maxLength": submission.MAX_TYPE_LENGTH,
            "pattern": submission.TYPE_PATTERN.pattern,
        },
        "fleetq.v1.SubmitStepRequest.priority": _range(submission.PRIORITY_RANGE),
        "fleetq.v1.SubmitStepRequest.max_retries": _range(submission.MAX_RETRIES_RANGE),
        "fleetq.v1.SubmitStepRequest.idempotency_key": {
            "minLength": 1,
            "maxLength": submission.MAX_IDEMPOTENCY_KEY_LENGTH,
        },
        "fleetq.v1.SubmitBatchRequest.steps": {
            "minItems": 1,
            "maxItems": submission.MAX_BATCH_STEPS,
        },
        "fleetq.v1.GetStepStatusRequest.step_id": {"maxLength": submission.MAX_STEP_ID_LENGTH},
        "fleetq.v1.GetIdempotencyKeyRequest.step_id": {"maxLength": submission.MAX_STEP_ID_LENGTH},
    }
)

_INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "format": "uint32", "minimum": 0, "maximum": 2**32 - 1}
_INT64 = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
_UINT64 = {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}
_SCALARS: Mapping[int, Mapping[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32,
    FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: _UINT64,
    FieldDescriptor.TYPE_FIXED64: _UINT64,
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte", "contentEncoding": "base64"},
}
# Well-known types with a JSON form of their own (wrappers are recognised by shape).
_WELL_KNOWN: Mapping[str, Mapping[str, Any]] = {
    f"{_WKT_PREFIX}Struct": {"type": "object"},
    f"{_WKT_PREFIX}Value": {},  # any JSON value, null included
    f"{_WKT_PREFIX}ListValue": {"type": "array"},
    f"{_WKT_PREFIX}Timestamp": {"type": "string", "format": "date-time"},
    f"{_WKT_PREFIX}Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    f"{_WKT_PREFIX}FieldMask": {"type": "string"},
    f"{_WKT_PREFIX}Empty": {"type": "object", "maxProperties": 0},
    f"{_WKT_PREFIX}Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
    },
}
_INTEGER_TYPES = frozenset(
    kind for kind, schema in _SCALARS.items() if schema in (_INT32, _UINT32, _INT64, _UINT64)
)
# Map keys are JSON object keys: integers and booleans appear as their text.
_MAP_KEY_NAMES: Mapping[int, Mapping[str, Any]] = {
    **{kind: {"pattern": "^-?[0-9]+$"} for kind in _INTEGER_TYPES},
    FieldDescriptor.TYPE_BOOL: {"enum": ["true", "false"]},
}


class Direction(enum.Enum):
    """Requests and responses differ: which fields must appear, and whether null may."""

    REQUEST = "request"
    RESPONSE = "response"


def openapi_document(
    service: ServiceDescriptor,
    *,
    title: str,
    version: str,
    statuses: Mapping[str, Statuses] = METHOD_STATUSES,
    field_rules: Mapping[str, Mapping[str, Any]] = FIELD_RULES,
    protected_methods: Collection[str] = (),
) -> dict[str, Any]:
    """The OpenAPI document of every REST route of `service`.

    `protected_methods` (`/package.Service/Method`) require a bearer token: they get a
    security requirement and a 401 response.
    """
    routes = routes_for_service(service)
    schemas = _Schemas(routes, field_rules)
    paths: dict[str, dict[str, Any]] = {}
    error_statuses: set[int] = set()
    operation_ids: dict[str, int] = {}
    operations: list[tuple[Route, dict[str, Any]]] = []
    for route in routes:
        name = route.method.name
        count = operation_ids[name] = operation_ids.get(name, 0) + 1
        route_statuses = statuses.get(route.method.full_name, Statuses())
        protected = route.full_method in protected_methods
        errors = _error_statuses(route_statuses, protected=protected)
        error_statuses.update(errors)
        path, operation = _operation(route, schemas, route_statuses.success, errors)
        # Additional bindings of one RPC need operation ids of their own.
        operation = {"operationId": name if count == 1 else f"{name}{count}", **operation}
        if protected:
            operation["security"] = [{ADMIN_SECURITY_SCHEME: []}]
        paths.setdefault(path, {})[route.http_method.lower()] = operation
        operations.append((route, operation))
    _link_responses(operations)
    components: dict[str, Any] = {
        "schemas": {_ERROR_BODY: _ERROR_BODY_SCHEMA, **schemas.components},
        "responses": {
            f"Error{status}": _error_response(status) for status in sorted(error_statuses)
        },
    }
    if protected_methods:
        components["securitySchemes"] = {
            ADMIN_SECURITY_SCHEME: {"type": "http", "scheme": "bearer"}
        }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": f"REST transcoding of the gRPC service {service.full_name}.",
        },
        "tags": [{"name": service.full_name}],
        "paths": paths,
        "components": components,
    }


def openapi_endpoint(document: Mapping[str, Any]) -> ASGIApp:
    """An ASGI app answering GET with `document` as JSON (mount it at /openapi.json)."""
    body = dumps(document)

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        status, payload, headers = 200, body, [(b"content-type", b"application/json")]
        if scope["method"] != "GET":
            detail = f"method {scope['method']} is not allowed on {scope['path']}; allowed: GET"
            status = METHOD_NOT_ALLOWED.status
            payload = dumps(error_body(detail, METHOD_NOT_ALLOWED.error_type, scope["path"]))
            headers.append((b"allow", b"GET"))
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return endpoint


_ERROR_BODY_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "description": "Every error answer: what went wrong, its category, when and where.",
    "properties": {
        "detail": {"type": "string"},
        "error_type": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "path": {"type": "string"},
    },
    "required": ["detail", "error_type", "timestamp", "path"],
    "additionalProperties": False,
}


def _error_response(status: int) -> dict[str, Any]:
    error_types = error_types_for_status(status)
    return {
        "description": f"{HTTPStatus(status).phrase}: error_type {' or '.join(error_types)}",
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [
                        {"$ref": f"#/components/schemas/{_ERROR_BODY}"},
                        {"properties": {"error_type": {"enum": list(error_types)}}},
                    ]
                }
            }
        },
    }


def _error_statuses(statuses: Statuses, *, protected: bool) -> list[int]:
    extra = (UNAUTHENTICATED_STATUS,) if protected else ()
    return sorted({*COMMON_ERROR_STATUSES, *statuses.errors, *extra})


def _operation(
    route: Route, schemas: _Schemas, success: Mapping[int, str], error_statuses: list[int]
) -> tuple[str, dict[str, Any]]:
    """A route's OpenAPI path and operation (without operationId and security)."""
    path, parameters = _openapi_path(route.template)
    decoder = route.decoder
    for name, leaf in decoder.path_fields.items():
        schema = schemas.parameter_schema(leaf)
        if schema.get("type") == "string":
            schema = {"minLength": 1, **schema}  # a path segment is never empty
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    for name, leaf in decoder.query_fields().items():
        schema = schemas.parameter_schema(leaf)
        parameters.append({"name": name, "in": "query", "required": False, "schema": schema})
    operation: dict[str, Any] = {
        "tags": [route.method.containing_service.full_name],
        "description": f"gRPC method {route.method.full_name}.",
    }
    if parameters:
        operation["parameters"] = parameters
    if decoder.has_body:
        body_field = decoder.body_field
        body_schema = (
            _nullable(schemas.message_ref(route.method.input_type, Direction.REQUEST))
            if body_field is None
            else schemas.field_schema(body_field, Direction.REQUEST)
        )
        operation["requestBody"] = {  # an empty or null body means an empty message
            "required": False,
            "content": {"application/json": {"schema": body_schema}},
        }
    response_schema = schemas.message_ref(route.method.output_type, Direction.RESPONSE)
    responses: dict[str, Any] = {
        str(status): {
            "description": description,
            "content": {"application/json": {"schema": response_schema}},
        }
        for status, description in success.items()
    }
    for status in error_statuses:
        responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
    operation["responses"] = dict(sorted(responses.items()))
    return path, operation


def _link_responses(operations: list[tuple[Route, dict[str, Any]]]) -> None:
    """Link each success response to the operations whose every path variable it carries
    as a top-level scalar field of the same name: a submit's `step_id` feeds
    `/status/{step_id}`. Clients (and schemathesis' stateful phase) can follow them."""
    for route, operation in operations:
        fields = route.method.output_type.fields_by_name
        links: dict[str, Any] = {}
        for target_route, target in operations:
            variables = target_route.template.variables
            carried = [fields.get(name) for name in variables]
            if variables and all(_is_singular_scalar(field) for field in carried):
                parameters = {name: f"$response.body#/{name}" for name in variables}
                target_id = target["operationId"]
                links[target_id] = {"operationId": target_id, "parameters": parameters}
        for response in operation["responses"].values():
            if links and "$ref" not in response:
                response["links"] = links


def _is_singular_scalar(field: FieldDescriptor | None) -> bool:
    return field is not None and field.message_type is None and not field.is_repeated


def _openapi_path(template: PathTemplate) -> tuple[str, list[dict[str, Any]]]:
    """The OpenAPI path of a template, and parameters for its anonymous `*` segments."""
    parts: list[str] = []
    wildcards: list[dict[str, Any]] = []
    for segment in template.segments:
        if isinstance(segment, Literal):
            parts.append(quote(segment.value, safe="!$&'()+,;=@"))
        elif isinstance(segment, Variable):
            parts.append(f"{{{segment.field_path}}}")
        else:  # `*` matches any one segment and binds nothing; OpenAPI needs a name
            name = f"_segment{len(wildcards) + 1}"
            parts.append(f"{{{name}}}")
            schema = {"type": "string", "minLength": 1}
            wildcards.append({"name": name, "in": "path", "required": True, "schema": schema})
    return "/" + "/".join(parts), wildcards


def _nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    if not schema:
        return {}  # any JSON value: null already included
    kind = schema.get("type")
    if isinstance(kind, str) and "enum" not in schema:
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [dict(schema), {"type": "null"}]}


def _is_required(field: FieldDescriptor) -> bool:
    """Marked `(google.api.field_behavior) = REQUIRED` in the proto."""
    behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    return field_behavior_pb2.REQUIRED in behaviors


class _Schemas:
    """Builds JSON Schemas for fields and collects message schemas as components.

    A message used in both directions gets two components: `<full name>` describes the
    response, `<full name>Input` the request.
    """

    def __init__(self, routes: Iterable[Route], rules: Mapping[str, Mapping[str, Any]]) -> None:
        routes = list(routes)
        self._rules = rules
        inputs = _reachable_messages(route.method.input_type for route in routes)
        outputs = _reachable_messages(route.method.output_type for route in routes)
        self._both_ways = inputs & outputs
        self.components: dict[str, dict[str, Any]] = {}

    def message_ref(self, descriptor: Descriptor, direction: Direction) -> dict[str, Any]:
        name = descriptor.full_name
        if direction is Direction.REQUEST and name in self._both_ways:
            name += "Input"
        if name not in self.components:
            self.components[name] = {}  # claimed first: a recursive message refers to itself
            self.components[name] = self._message_schema(descriptor, direction)
        return {"$ref": f"#/components/schemas/{name}"}

    def field_schema(self, field: FieldDescriptor, direction: Direction) -> dict[str, Any]:
        """The schema of a field as it appears in its message."""
        message_type = field.message_type
        if message_type is not None and message_type.GetOptions().map_entry:
            schema = self._map_schema(message_type, direction)
        elif field.is_repeated:
            schema = {"type": "array", "items": self.value_schema(field, direction)}
        else:
            schema = self.value_schema(field, direction)
        if direction is Direction.REQUEST:
            schema = _nullable(self._with_rules(field, schema))
        elif null_when_unset(field):
            schema = _nullable(schema)
        return schema

    def value_schema(self, field: FieldDescriptor, direction: Direction) -> dict[str, Any]:
        """The schema of one value of the field's type (an element, if it is repeated)."""
        message_type = field.message_type
        if message_type is None:
            if field.enum_type is not None:
                return {"type": "string", "enum": [value.name for value in field.enum_type.values]}
            return dict(_SCALARS[field.type])
        name = message_type.full_name
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name.startswith(_WKT_PREFIX) and [f.name for f in message_type.fields] == ["value"]:
            return self.value_schema(message_type.fields_by_name["value"], direction)  # wrapper
        return self.message_ref(message_type, direction)

    def parameter_schema(self, field: FieldDescriptor) -> dict[str, Any]:
        """A path or query parameter: repeated fields take the parameter several times."""
        schema = self.value_schema(field, Direction.REQUEST)
        if field.is_repeated:
            schema = {"type": "array", "items": schema}
        return self._with_rules(field, schema)

    def _with_rules(self, field: FieldDescriptor, schema: dict[str, Any]) -> dict[str, Any]:
        return {**schema, **self._rules.get(field.full_name, {})}

    def _message_schema(self, descriptor: Descriptor, direction: Direction) -> dict[str, Any]:
        fields = descriptor.fields
        if direction is Direction.RESPONSE:  # every field is emitted, unset ones too
            required = [f.name for f in fields if not in_real_oneof(f)]
        else:
            required = [f.name for f in fields if _is_required(f)]
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {f.name: self.field_schema(f, direction) for f in fields},
            "additionalProperties": False,
        }
        if required:
            schema["required"] = required
        return schema

    def _map_schema(self, entry: Descriptor, direction: Direction) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": self.value_schema(entry.fields_by_name["value"], direction),
        }
        key_names = _MAP_KEY_NAMES.get(entry.fields_by_name["key"].type)
        if key_names is not None:
            schema["propertyNames"] = dict(key_names)
        return schema


def _reachable_messages(roots: Iterable[Descriptor]) -> frozenset[str]:
    """Full names of the messages (well-known types aside) reachable from `roots`."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        descriptor = stack.pop()
        name = descriptor.full_name
        if name in seen or name.startswith(_WKT_PREFIX):
            continue
        seen.add(name)
        stack.extend(f.message_type for f in descriptor.fields if f.message_type is not None)
    return frozenset(seen)
