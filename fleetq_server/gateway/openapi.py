"""The REST API as an OpenAPI 3.1 document, generated from the service descriptor.

Built at start-up from the routes the gateway serves (`routes_for_service`: the
google.api.http rules) and the message descriptors it decodes and encodes with, so the
document cannot drift from what is served; the schemas are `openapi_schemas`'.

What a descriptor's types cannot say comes in at composition: per-RPC `Statuses` (success
statuses a servicer picks through `x-http-code`, errors its own logic raises) and field
rules (JSON Schema keywords per full field name). FLEET-Q reads both from its proto's own
options (`fleetq_server.api.proto_options`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from google.protobuf.descriptor import FieldDescriptor, ServiceDescriptor

from fleetq_server.gateway.asgi import ASGIApp, Receive, Scope, Send
from fleetq_server.gateway.http_errors import METHOD_NOT_ALLOWED, error_body, error_types_for_status
from fleetq_server.gateway.openapi_schemas import Direction, Schemas, nullable
from fleetq_server.gateway.path_templates import Literal, PathTemplate, Variable
from fleetq_server.gateway.response_encoding import dumps
from fleetq_server.gateway.routes import Route, routes_for_service

OPENAPI_VERSION = "3.1.0"
# Statuses every route can answer: a request the gateway or the servicer refuses (bad JSON,
# unknown field, value out of range, unknown query parameter), and database/internal errors.
COMMON_ERROR_STATUSES = (400, 500)
UNAUTHENTICATED_STATUS = 401
ADMIN_SECURITY_SCHEME = "adminToken"
_ERROR_BODY = "ErrorBody"


@dataclass(frozen=True)
class Statuses:
    """What one RPC answers over REST beyond what its descriptor says."""

    success: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({200: "OK"}))
    errors: tuple[int, ...] = ()


# The one table of per-RPC statuses (the contract's endpoints.md), keyed by full RPC name.
# `success` lists the codes the servicer sets through x-http-code (200 when absent);
# `errors` those its domain errors produce beyond COMMON_ERROR_STATUSES (see


def openapi_document(
    service: ServiceDescriptor,
    *,
    title: str,
    version: str,
    statuses: Mapping[str, Statuses] = MappingProxyType({}),
    field_rules: Mapping[str, Mapping[str, Any]] = MappingProxyType({}),
    protected_methods: Collection[str] = (),
) -> dict[str, Any]:
    """The OpenAPI document of every REST route of `service`.

    `statuses` are keyed by full RPC name (`package.Service.Method`; absent: 200 and the
    common errors), `field_rules` by full field name (`package.Message.field`).

    `protected_methods` (`/package.Service/Method`) require a bearer token: they get a
    security requirement and a 401 response.
    """
    routes = routes_for_service(service)
    schemas = Schemas(routes, field_rules)
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
    route: Route, schemas: Schemas, success: Mapping[int, str], error_statuses: list[int]
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
            nullable(schemas.message_ref(route.method.input_type, Direction.REQUEST))
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
    verb = f":{template.verb}" if template.verb else ""
    return "/" + "/".join(parts) + verb, wildcards
