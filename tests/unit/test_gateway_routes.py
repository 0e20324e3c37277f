"""Routes come from whatever http annotations a service carries, with no gateway code.

Each test builds a small service descriptor at run time (in its own file in the default
pool) so annotations the FleetQ proto does not use can be exercised.
"""

import itertools
from typing import Any

import grpc
import httpx
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass

from fleetq_server.gateway import Gateway, RouteError
from fleetq_server.gateway.routes import MethodNotAllowed, RouteMatch, Router, routes_for_service

_COUNTER = itertools.count()
_STRING, _INT32, _OPTIONAL, _REPEATED = 9, 5, 1, 3


def build_service(
    methods: list[tuple[str, dict[str, Any]]],
    streaming: bool = False,
    client_streaming: bool = False,
) -> Any:
    """A service `Items` whose methods take and return `Item {string id; int32 n}`."""
    package = f"gwtest.p{next(_COUNTER)}"
    file = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '/')}.proto",
        package=package,
        syntax="proto3",
        dependency=["google/api/annotations.proto"],
    )
    item = file.message_type.add(name="Item")
    item.field.add(name="id", number=1, type=_STRING, label=_OPTIONAL, json_name="id")
    item.field.add(name="n", number=2, type=_INT32, label=_OPTIONAL, json_name="n")
    item.field.add(name="tags", number=3, type=_STRING, label=_REPEATED, json_name="tags")
    service = file.service.add(name="Items")
    for name, rule in methods:
        method = service.method.add(
            name=name,
            input_type=f".{package}.Item",
            output_type=f".{package}.Item",
            server_streaming=streaming,
            client_streaming=client_streaming,
        )
        http = method.options.Extensions[annotations_pb2.http]
        for key, value in rule.items():
            if key == "additional_bindings":
                for binding in value:
                    http.additional_bindings.add(**binding)
            elif key == "custom":
                http.custom.kind, http.custom.path = value
            else:
                setattr(http, key, value)
    pool = descriptor_pool.Default()
    pool.AddSerializedFile(file.SerializeToString())
    return pool.FindServiceByName(f"{package}.Items")


def echo_handlers(service: ServiceDescriptor) -> dict[str, grpc.RpcMethodHandler]:
    """Handlers that echo the request with `id` prefixed by the method name."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in service.methods:
        response_class = GetMessageClass(method.output_type)

        async def echo(
            request: Any, context: Any, name: str = method.name, cls: Any = response_class
        ) -> Any:
            return cls(id=f"{name}:{request.id}", n=request.n, tags=request.tags)

        handlers[f"/{service.full_name}/{method.name}"] = grpc.unary_unary_rpc_method_handler(echo)
    return handlers


async def call(service: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    app = Gateway(service, echo_handlers(service))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.request(method, path, **kwargs)


async def test_a_new_annotated_rpc_is_served_without_gateway_code() -> None:
    service = build_service([("Fetch", {"get": "/items/{id}"})])

    response = await call(service, "GET", "/items/a1", params={"n": "3", "tags": ["x", "y"]})

    assert response.status_code == 200
    assert response.json() == {"id": "Fetch:a1", "n": 3, "tags": ["x", "y"]}


async def test_additional_bindings_and_custom_verbs_get_routes_too() -> None:
    service = build_service(
        [
            (
                "Fetch",
                {"get": "/items/{id}", "additional_bindings": [{"get": "/v2/items/{id}"}]},
            ),
            ("Touch", {"custom": ("TOUCH", "/items/{id}")}),
        ]
    )

    v2 = await call(service, "GET", "/v2/items/b")
    touched = await call(service, "TOUCH", "/items/c")

    assert v2.json()["id"] == "Fetch:b"
    assert touched.json()["id"] == "Touch:c"


async def test_literal_route_wins_over_a_variable_for_the_same_method() -> None:
    service = build_service(
        [("Fetch", {"get": "/items/{id}"}), ("Latest", {"get": "/items/latest"})]
    )

    latest = await call(service, "GET", "/items/latest")
    other = await call(service, "GET", "/items/other")

    assert latest.json()["id"] == "Latest:"
    assert other.json()["id"] == "Fetch:other"


async def test_named_body_field_and_query_fill_one_request() -> None:
    service = build_service([("Tag", {"put": "/items/{id}/tags", "body": "tags"})])

    response = await call(service, "PUT", "/items/d/tags", json=["p", "q"], params={"n": "2"})

    assert response.json() == {"id": "Tag:d", "n": 2, "tags": ["p", "q"]}


def test_router_reports_allowed_methods_for_a_known_path() -> None:
    service = build_service(
        [("Fetch", {"get": "/items/{id}"}), ("Replace", {"put": "/items/{id}", "body": "*"})]
    )
    router = Router(routes_for_service(service))

    assert isinstance(router.resolve("PUT", "/items/x"), RouteMatch)
    assert router.resolve("DELETE", "/items/x") == MethodNotAllowed(allowed=("GET", "HEAD", "PUT"))
    assert router.resolve("GET", "/things/x") is None


def test_routes_starting_with_a_variable_still_compete_with_literal_ones() -> None:
    service = build_service(
        [
            ("Fetch", {"get": "/{id}/items"}),
            ("List", {"get": "/all/items"}),
            ("Pause", {"post": "/items:pause", "body": "*"}),
            ("Make", {"post": "/items", "body": "*"}),
        ]
    )
    router = Router(routes_for_service(service))

    def method(path: str, http_method: str = "GET") -> str:
        match = router.resolve(http_method, path)
        assert isinstance(match, RouteMatch), path
        return match.route.method.name

    assert (method("/all/items"), method("/other/items")) == ("List", "Fetch")
    assert (method("/items:pause", "POST"), method("/items", "POST")) == ("Pause", "Make")
    assert router.resolve("DELETE", "/all/items") == MethodNotAllowed(allowed=("GET", "HEAD"))
    assert router.resolve("GET", "/all/items/more") is None


def test_head_resolves_to_the_get_route_of_its_path_and_nothing_else() -> None:
    service = build_service([("Fetch", {"get": "/items/{id}"}), ("Make", {"post": "/new"})])
    router = Router(routes_for_service(service))

    head = router.resolve("HEAD", "/items/x")
    assert isinstance(head, RouteMatch) and head.route.http_method == "GET"
    assert router.resolve("HEAD", "/new") == MethodNotAllowed(allowed=("POST",))


@pytest.mark.parametrize(
    ("methods", "expected"),
    [
        ([("A", {"get": "/x/{id}"}), ("B", {"get": "/x/{n}"})], "both route GET"),
        ([("A", {"get": "/x/{id}", "response_body": "id"})], "response_body"),
        ([("A", {"get": "/x/{nope}"})], "not a field"),
        ([("A", {"get": "/x/{tags}"})], "singular scalar"),
        ([("A", {"post": "/x", "body": "nope"})], "not a field"),
        ([("A", {"get": "/x/{id=**}"})], "single-segment"),
        ([("A", {"body": "*"})], "no pattern"),
    ],
)
def test_unservable_annotations_stop_startup(
    methods: list[tuple[str, dict[str, Any]]], expected: str
) -> None:
    service = build_service(methods)

    with pytest.raises(RouteError, match=expected):
        Gateway(service, echo_handlers(service))


def test_client_streaming_methods_with_http_rules_stop_startup() -> None:
    service = build_service([("Watch", {"get": "/watch"})], client_streaming=True)

    with pytest.raises(RouteError, match="streaming"):
        routes_for_service(service)


async def test_a_custom_method_with_a_verb_routes_beside_the_plain_path() -> None:
    service = build_service(
        [("Fetch", {"get": "/items/{id}"}), ("Cancel", {"post": "/items/{id}:cancel"})]
    )

    cancelled = await call(service, "POST", "/items/a1:cancel")
    fetched = await call(service, "GET", "/items/a1:cancel")  # no verb route for GET
    posted = await call(service, "POST", "/items/a1")

    assert cancelled.json()["id"] == "Cancel:a1"
    assert fetched.json()["id"] == "Fetch:a1:cancel"
    assert posted.status_code == 405
    # The custom method's path advertises its own method only.
    deleted = await call(service, "DELETE", "/items/a1:cancel")
    assert (deleted.status_code, deleted.headers["allow"]) == (405, "POST")
