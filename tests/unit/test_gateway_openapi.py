"""The OpenAPI document is generated from the descriptors and http rules the gateway serves."""

import itertools
import json
from typing import Any

import httpx
import jsonschema
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc as pb_grpc
from google.api import annotations_pb2, field_behavior_pb2
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    struct_pb2,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from openapi_spec_validator import validate

from fleetq_server.api.auth import admin_methods
from fleetq_server.api.method_handlers import unary_handlers
from fleetq_server.api.proto_options import field_rules_schema, method_statuses, openapi_options
from fleetq_server.gateway import Gateway
from fleetq_server.gateway.http_errors import error_types_for_status
from fleetq_server.gateway.openapi import openapi_document, openapi_endpoint
from fleetq_server.gateway.response_encoding import encode_message

SERVICE = pb.DESCRIPTOR.services_by_name["FleetQService"]
F = descriptor_pb2.FieldDescriptorProto
_COUNTER = itertools.count()


def fleetq_document(**kwargs: Any) -> dict[str, Any]:
    return openapi_document(
        SERVICE, title="FLEET-Q", version="9.9.9", **{**openapi_options(SERVICE), **kwargs}
    )


def schema_of(document: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["components"]["schemas"][name]
    return schema


def assert_valid(document: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    """Validate `instance` against `schema`, resolving refs inside the document."""
    root = {**schema, "components": document["components"]}
    validator = jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(instance)


def response_schema(document: dict[str, Any], path: str, method: str, status: str) -> Any:
    response = document["paths"][path][method]["responses"][status]
    if "$ref" in response:
        response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response["content"]["application/json"]["schema"]


def test_the_fleetq_document_is_valid_openapi_3_1() -> None:
    document = fleetq_document(protected_methods=admin_methods(SERVICE))

    validate(document)

    assert document["openapi"] == "3.1.0"
    assert document["info"]["version"] == "9.9.9"


def test_paths_and_methods_are_exactly_the_gateway_routes() -> None:
    gateway = Gateway(SERVICE, unary_handlers(SERVICE, pb_grpc.FleetQServiceServicer()))
    routes = {(r.http_method.lower(), r.template.template) for r in gateway.routes}

    document = fleetq_document()

    documented = {(m, path) for path, item in document["paths"].items() for m in item}
    assert documented == routes
    operation_ids = {
        op["operationId"] for item in document["paths"].values() for op in item.values()
    }
    assert operation_ids == {method.name for method in SERVICE.methods}


def test_scalars_follow_the_proto3_json_mapping() -> None:
    document = fleetq_document()
    health = schema_of(document, "fleetq.v1.GetHealthResponse")["properties"]

    assert health["max_capacity"] == {
        "type": "integer",
        "format": "int32",
        "minimum": -(2**31),
        "maximum": 2**31 - 1,
    }
    assert health["uptime_seconds"] == {"type": "number", "format": "double"}
    assert health["is_leader"] == {"type": "boolean"}
    assert health["pod_id"] == {"type": "string"}


def test_well_known_types_maps_repeated_and_nullable_fields() -> None:
    document = fleetq_document()
    status = schema_of(document, "fleetq.v1.GetStepStatusResponse")["properties"]
    payload = schema_of(document, "fleetq.v1.StepPayload")["properties"]
    queue = schema_of(document, "fleetq.v1.GetQueueStatsResponse")["properties"]
    summary = schema_of(document, "fleetq.v1.RecoverySummary")["properties"]

    assert status["created_ts"] == {"type": ["string", "null"], "format": "date-time"}
    assert status["claimed_by"] == {"type": ["string", "null"]}  # presence: a one-field oneof
    assert status["result"] == {}  # google.protobuf.Value: any JSON value
    assert status["error"] == {
        "anyOf": [{"$ref": "#/components/schemas/fleetq.v1.StepError"}, {"type": "null"}]
    }
    assert payload["args"] == {"type": ["object", "null"]}  # Struct
    assert summary["dead_pods"] == {"type": "array", "items": {"type": "string"}}
    depth = queue["queue_depth_by_priority"]
    assert depth["type"] == "object"
    assert depth["propertyNames"] == {"pattern": "^-?[0-9]+$"}
    assert depth["additionalProperties"]["format"] == "int32"
    assert queue["pod_capacity"]["additionalProperties"] == {
        "$ref": "#/components/schemas/fleetq.v1.PodCapacity"
    }


def test_responses_require_every_field_and_requests_only_the_declared_ones() -> None:
    document = fleetq_document()
    response = schema_of(document, "fleetq.v1.GetStepStatusResponse")
    request = schema_of(document, "fleetq.v1.SubmitStepRequest")

    assert set(response["required"]) == {f.name for f in pb.GetStepStatusResponse.DESCRIPTOR.fields}
    assert request["required"] == ["type", "args"]  # (google.api.field_behavior) = REQUIRED
    assert request["properties"]["priority"]["type"] == ["integer", "null"]  # null means unset
    assert request["additionalProperties"] is False


@pytest.mark.parametrize(
    "message",
    [
        pb.GetStepStatusResponse(),
        pb.GetStepStatusResponse(
            step_id="step_1",
            status="failed",
            claimed_by="pod-1",
            created_ts=timestamp_pb2.Timestamp(seconds=1704110400, nanos=5000),
            payload=pb.StepPayload(
                type="t", args=struct_pb2.Struct(fields={"n": struct_pb2.Value(number_value=5)})
            ),
            result=struct_pb2.Value(string_value="ok"),
            error=pb.StepError(type="ValueError", message="bad"),
        ),
        pb.GetQueueStatsResponse(
            queue_depth_by_priority={-5: 1, 7: 2},
            pod_capacity={"p": pb.PodCapacity(current=1, max=8)},
        ),
        pb.GetLeaderResponse(
            election_details=pb.ElectionDetails(eligible_pods=[pb.EligiblePod(pod_id="p")])
        ),
    ],
    ids=["empty-status", "full-status", "queue", "leader"],
)
def test_what_the_gateway_encodes_matches_the_documented_schema(message: Message) -> None:
    document = fleetq_document()
    name = message.DESCRIPTOR.full_name

    assert_valid(document, {"$ref": f"#/components/schemas/{name}"}, encode_message(message))


def test_documented_success_codes_come_from_the_status_table() -> None:
    document = fleetq_document()

    assert set(document["paths"]["/submit"]["post"]["responses"]) == {
        "200",
        "201",
        "400",
        "409",
        "500",
    }
    assert set(document["paths"]["/health"]["get"]["responses"]) == {"200", "400", "500", "503"}
    assert set(document["paths"]["/status/{step_id}"]["get"]["responses"]) == {
        "200",
        "400",
        "404",
        "500",
    }
    assert set(document["paths"]["/admin/recovery/run"]["post"]["responses"]) == {
        "200",
        "400",
        "403",
        "409",
        "500",
    }


def test_the_status_table_names_only_real_rpcs() -> None:
    assert set(method_statuses(SERVICE)) <= {method.full_name for method in SERVICE.methods}


def test_every_error_status_uses_the_contract_error_body() -> None:
    document = fleetq_document(protected_methods=admin_methods(SERVICE))
    body = {
        "detail": "Step x not found",
        "error_type": "not_found",
        "timestamp": "2024-01-01T12:00:00.000000Z",
        "path": "/status/x",
    }

    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if "$ref" not in response:  # a success status, 503 from /health included
                    assert int(status) < 400 or (path, status) == ("/health", "503")
                    continue
                schema = response_schema(document, path, method, status)
                error_types = schema["allOf"][1]["properties"]["error_type"]["enum"]
                assert_valid(document, schema, {**body, "error_type": error_types[0]})
                with pytest.raises(jsonschema.ValidationError):
                    assert_valid(document, schema, {"detail": "no error_type, no timestamp"})
    assert response_schema(document, "/submit", "post", "500")["allOf"][1]["properties"][
        "error_type"
    ] == {"enum": ["database_error", "internal_error"]}


def test_protected_methods_require_a_bearer_token_and_may_answer_401() -> None:
    open_document = fleetq_document()
    document = fleetq_document(protected_methods=admin_methods(SERVICE))

    queue = document["paths"]["/admin/queue"]["get"]
    assert queue["security"] == [{"adminToken": []}]
    assert "401" in queue["responses"]
    assert document["components"]["securitySchemes"]["adminToken"]["scheme"] == "bearer"
    assert "security" not in document["paths"]["/submit"]["post"]
    assert "401" not in open_document["paths"]["/admin/queue"]["get"]["responses"]
    assert "securitySchemes" not in open_document["components"]


def build_service(extra_rules: dict[str, dict[str, Any]] | None = None) -> ServiceDescriptor:
    """A service with what FleetQ's proto does not use: enums, int64, wrappers, oneofs,
    recursion, query parameters, `body: "field"`, `*` segments and additional bindings."""
    package = f"oatest.p{next(_COUNTER)}"
    file = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '/')}.proto",
        package=package,
        syntax="proto3",
        dependency=[
            "google/api/annotations.proto",
            "google/api/field_behavior.proto",
            wrappers_pb2.DESCRIPTOR.name,
        ],
    )
    file.enum_type.add(name="Kind").value.extend(
        [
            descriptor_pb2.EnumValueDescriptorProto(name="KIND_UNSPECIFIED", number=0),
            descriptor_pb2.EnumValueDescriptorProto(name="KIND_BIG", number=1),
        ]
    )
    thing = file.message_type.add(name="Thing")
    one, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    thing.field.add(name="id", number=1, type=F.TYPE_STRING, label=one)
    thing.field.add(name="count", number=2, type=F.TYPE_INT64, label=one)
    thing.field.add(
        name="kind", number=3, type=F.TYPE_ENUM, label=one, type_name=f".{package}.Kind"
    )
    thing.field.add(
        name="limit",
        number=4,
        type=F.TYPE_MESSAGE,
        label=one,
        type_name=".google.protobuf.UInt32Value",
    )
    thing.field.add(
        name="parent", number=5, type=F.TYPE_MESSAGE, label=one, type_name=f".{package}.Thing"
    )
    thing.oneof_decl.add(name="choice")
    thing.field.add(name="a", number=6, type=F.TYPE_STRING, label=one, oneof_index=0)
    thing.field.add(name="b", number=7, type=F.TYPE_BOOL, label=one, oneof_index=0)
    thing.field.add(name="tags", number=8, type=F.TYPE_STRING, label=rep)
    thing.field.add(name="data", number=9, type=F.TYPE_BYTES, label=one)
    thing.field[0].options.Extensions[field_behavior_pb2.field_behavior].append(
        field_behavior_pb2.REQUIRED
    )
    service = file.service.add(name="Things")
    rules = {
        "Get": {"get": "/v1/things/{id}/*", "additional_bindings": [{"get": "/v2/things/{id}"}]},
        "Rename": {"patch": "/v1/things/{id}", "body": "parent"},
        **(extra_rules or {}),
    }
    for name, rule in rules.items():
        method = service.method.add(
            name=name, input_type=f".{package}.Thing", output_type=f".{package}.Thing"
        )
        http = method.options.Extensions[annotations_pb2.http]
        for binding in rule.pop("additional_bindings", []):  # type: ignore[attr-defined]
            http.additional_bindings.add(**binding)
        for key, value in rule.items():
            setattr(http, key, value)
    pool = descriptor_pool.Default()
    pool.AddSerializedFile(file.SerializeToString())
    return pool.FindServiceByName(f"{package}.Things")


def test_any_annotated_service_gets_a_valid_document() -> None:
    service = build_service()
    package = service.full_name.rsplit(".", 1)[0]

    document = openapi_document(service, title="t", version="1")

    validate(document)
    get = document["paths"]["/v1/things/{id}/{_segment1}"]["get"]
    assert [p["name"] for p in get["parameters"] if p["in"] == "path"] == ["_segment1", "id"]
    query = {p["name"]: p["schema"] for p in get["parameters"] if p["in"] == "query"}
    assert query["count"] == {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
    assert query["tags"] == {"type": "array", "items": {"type": "string"}}
    assert query["limit"]["maximum"] == 2**32 - 1  # a wrapper is its value
    assert "parent.id" in query and "parent.parent.id" not in query  # recursion stops
    assert document["paths"]["/v2/things/{id}"]["get"]["operationId"] == "Get2"
    rename = document["paths"]["/v1/things/{id}"]["patch"]
    assert "parent" not in {p["name"].split(".")[0] for p in rename["parameters"]}
    assert rename["requestBody"]["content"]["application/json"]["schema"]["anyOf"][0] == {
        "$ref": f"#/components/schemas/{package}.ThingInput"
    }
    output = schema_of(document, f"{package}.Thing")
    assert output["properties"]["kind"] == {
        "type": "string",
        "enum": ["KIND_UNSPECIFIED", "KIND_BIG"],
    }
    assert "a" not in output["required"] and "b" not in output["required"]  # real oneof
    assert output["properties"]["data"]["format"] == "byte"
    assert schema_of(document, f"{package}.ThingInput")["required"] == ["id"]


async def test_the_endpoint_serves_the_document_on_get_only() -> None:
    document = fleetq_document()
    transport = httpx.ASGITransport(app=openapi_endpoint(document))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        got = await client.get("/openapi.json")
        posted = await client.post("/openapi.json")

    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    assert got.json() == json.loads(json.dumps(document))
    assert posted.status_code == 405
    assert posted.headers["allow"] == "GET"
    assert set(posted.json()) == {"detail", "error_type", "timestamp", "path"}
    assert posted.json()["error_type"] == "method_not_allowed"


def test_every_error_status_in_the_table_has_an_error_type() -> None:
    for statuses in method_statuses(SERVICE).values():
        for status in statuses.errors:
            assert error_types_for_status(status), status


def test_request_schemas_state_the_limits_the_servicer_enforces() -> None:
    document = fleetq_document()
    submit = schema_of(document, "fleetq.v1.SubmitStepRequest")["properties"]
    batch = schema_of(document, "fleetq.v1.SubmitBatchRequest")["properties"]
    step_id = document["paths"]["/status/{step_id}"]["get"]["parameters"][0]["schema"]

    assert submit["priority"]["minimum"] == -1000 and submit["priority"]["maximum"] == 1000
    assert submit["max_retries"]["minimum"] == 0 and submit["max_retries"]["maximum"] == 100
    assert submit["type"]["pattern"] == "^[A-Za-z0-9_.\\-]+$"
    assert submit["type"]["maxLength"] == 128
    assert (batch["steps"]["minItems"], batch["steps"]["maxItems"]) == (1, 1000)
    assert step_id == {"type": "string", "minLength": 1, "maxLength": 128}
    assert set(field_rules_schema(SERVICE)) <= {
        field.full_name
        for message in pb.DESCRIPTOR.message_types_by_name.values()
        for field in message.fields
    }


def test_responses_carrying_an_id_link_to_the_operations_taking_it() -> None:
    document = fleetq_document()

    created = document["paths"]["/submit"]["post"]["responses"]["201"]

    assert created["links"]["GetStepStatus"] == {
        "operationId": "GetStepStatus",
        "parameters": {"step_id": "$response.body#/step_id"},
    }
    # Every operation on a step by its id, the worker RPCs' outcomes among them.
    assert set(created["links"]) == {
        "GetStepStatus",
        "GetIdempotencyKey",
        "WatchStep",
        "CancelStep",
        "RetryStep",
        "CompleteStep",
        "FailStep",
        "ExtendLease",
        "ReleaseStep",
    }
    assert "links" not in document["paths"]["/submit/batch"]["post"]["responses"]["201"]


def test_a_custom_method_verb_stays_in_the_documented_path() -> None:
    service = build_service({"Cancel": {"post": "/v1/things/{id}:cancel", "body": "*"}})

    document = openapi_document(service, title="t", version="1")

    validate(document)
    cancel = document["paths"]["/v1/things/{id}:cancel"]["post"]
    assert cancel["operationId"] == "Cancel"
    assert [p["name"] for p in cancel["parameters"] if p["in"] == "path"] == ["id"]
