"""REST routes read from the `google.api.http` options of a service descriptor.

This is what makes the gateway generic: every annotated unary or server-streaming method
(see `streaming`) gets its routes
(the main rule and any additional_bindings) with no per-endpoint code. Rules the gateway
cannot honour stop start-up with an error naming the method.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.api import annotations_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from fleetq_server.gateway.path_templates import (
    Literal,
    PathTemplate,
    compile_template,
    split_path,
)
from fleetq_server.gateway.request_binding import BindingError, RequestDecoder

_PATTERN_KINDS = ("get", "put", "post", "delete", "patch")


class RouteError(ValueError):
    """An http rule the gateway cannot serve; raised when the gateway is built."""


@dataclass(frozen=True)
class Route:
    """One HTTP method + path template bound to one RPC."""

    http_method: str
    template: PathTemplate
    method: MethodDescriptor
    decoder: RequestDecoder

    @property
    def full_method(self) -> str:
        """The gRPC method name, `/package.Service/Method`, as handlers are keyed."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"


@dataclass(frozen=True)
class RouteMatch:
    """A route and the path variables the request bound."""

    route: Route
    path_vars: dict[str, str]


@dataclass(frozen=True)
class MethodNotAllowed:
    """The path exists, but not for this HTTP method."""

    allowed: tuple[str, ...]
    # The path template of the first route the path matched (for labels, not identity).
    template: str = field(default="", compare=False)


def routes_for_service(service: ServiceDescriptor) -> list[Route]:
    """Every route the service's http annotations declare."""
    routes: list[Route] = []
    for method in service.methods:
        options = method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            continue
        if method.client_streaming:
            raise RouteError(
                f"{method.full_name}: client-streaming methods cannot be served over REST"
            )
        rule = options.Extensions[annotations_pb2.http]
        for binding in [rule, *rule.additional_bindings]:
            routes.append(_route(method, binding))
    return routes


def _route(method: MethodDescriptor, rule: Any) -> Route:
    kind = rule.WhichOneof("pattern")
    if kind in _PATTERN_KINDS:
        http_method, template = kind.upper(), getattr(rule, kind)
    elif kind == "custom":
        http_method, template = rule.custom.kind.upper(), rule.custom.path
    else:
        raise RouteError(f"{method.full_name}: http rule has no pattern")
    if rule.response_body:
        raise RouteError(f"{method.full_name}: response_body is not supported")
    try:
        compiled = compile_template(template)
        decoder = RequestDecoder(method.input_type, rule.body, compiled.variables)
    except (BindingError, ValueError) as error:
        raise RouteError(f"{method.full_name}: {error}") from None
    return Route(http_method=http_method, template=compiled, method=method, decoder=decoder)


class Router:
    """Finds the route for a request; literal segments win over variables."""

    def __init__(self, routes: Iterable[Route]) -> None:
        ordered = sorted(routes, key=lambda route: route.template.specificity)
        seen: dict[tuple[str, tuple[str | None, ...]], Route] = {}
        for route in ordered:
            key = (route.http_method, route.template.shape)
            if key in seen:
                raise RouteError(
                    f"{route.method.full_name} and {seen[key].method.full_name} both route "
                    f"{route.http_method} {route.template.template}"
                )
            seen[key] = route
        self._routes: Sequence[Route] = ordered
        # A request is tried only against the templates that could match it: same number of
        # segments, and the same first segment unless the template starts with a variable.
        # Walking every route cost a match attempt per RPC on every request.
        self._variable_first: dict[int, tuple[Route, ...]] = {}
        self._by_first: dict[tuple[int, str], tuple[Route, ...]] = {}
        for route in ordered:
            size, first = len(route.template.segments), _first_literal(route.template)
            if first is None:
                self._variable_first[size] = (*self._variable_first.get(size, ()), route)
            else:
                self._by_first[(size, first)] = ()
        for size, first in self._by_first:
            self._by_first[(size, first)] = tuple(
                route
                for route in ordered
                if len(route.template.segments) == size
                and _first_literal(route.template) in (first, None)
            )

    @property
    def routes(self) -> Sequence[Route]:
        """All routes, most specific first."""
        return self._routes

    def resolve(
        self, http_method: str, raw_path: str | bytes
    ) -> RouteMatch | MethodNotAllowed | None:
        """The matching route, MethodNotAllowed, or None for an unknown path.

        HEAD runs the GET route of its path (HTTP semantics: the same answer without the
        body, which the caller drops). Raises PathValueError when the path does not
        percent-decode to UTF-8.
        """
        segments = split_path(raw_path)
        wanted = "GET" if http_method == "HEAD" else http_method
        allowed: list[str] = []
        template = ""
        size = len(segments)
        candidates = self._by_first.get((size, segments[0]))
        if candidates is None:
            candidates = self._variable_first.get(size, ())
        for route in candidates:
            path_vars = route.template.match_segments(segments)
            if path_vars is None:
                continue
            if route.http_method == wanted:
                return RouteMatch(route=route, path_vars=path_vars)
            # Allow names the methods of the most specific template the path matched: a
            # custom method's path (`/things/x:pause`) advertises its own method, not those
            # of `/things/{name}` that would also take `x:pause` whole.
            template = template or route.template.template
            if route.template.template == template:
                allowed += [m for m in _with_head(route.http_method) if m not in allowed]
        return MethodNotAllowed(allowed=tuple(allowed), template=template) if allowed else None


def _first_literal(template: PathTemplate) -> str | None:
    """The first segment a path must have to match `template`, None if any will do. A
    one-segment template's verb is part of that segment (`/things:pause`)."""
    first = template.segments[0]
    if not isinstance(first, Literal):
        return None
    if template.verb and len(template.segments) == 1:
        return f"{first.value}:{template.verb}"
    return first.value


def _with_head(http_method: str) -> tuple[str, ...]:
    """The methods a route answers: its own, and HEAD too for GET."""
    return (http_method, "HEAD") if http_method == "GET" else (http_method,)
