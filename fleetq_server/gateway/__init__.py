"""Generic HTTP/JSON transcoding of the gRPC service, built from its google.api.http rules."""

from fleetq_server.gateway.app import ROUTE_TEMPLATE_KEY, Gateway
from fleetq_server.gateway.context import HTTP_CODE_KEY, GatewayServicerContext
from fleetq_server.gateway.http_errors import HttpError, error_body, http_error_for
from fleetq_server.gateway.routes import RouteError

__all__ = [
    "HTTP_CODE_KEY",
    "ROUTE_TEMPLATE_KEY",
    "Gateway",
    "GatewayServicerContext",
    "HttpError",
    "RouteError",
    "error_body",
    "http_error_for",
]
