"""Kubernetes' HTTP probes on the REST port: GET /livez and GET /readyz.

/livez answers 200 whenever the process serves HTTP at all: a liveness probe must not follow
the database, since restarting pods cannot end a database outage (the gRPC twin is the
`liveness` health service). /readyz is /health under the name probes expect: 503 while the
database is unreachable or the pod drains, which takes the pod out of the Service.
"""

from fleetq_server.gateway import ROUTE_TEMPLATE_KEY
from fleetq_server.gateway.asgi import ASGIApp, Receive, Scope, Send
from fleetq_server.gateway.http_errors import METHOD_NOT_ALLOWED, error_body
from fleetq_server.gateway.response_encoding import dumps

LIVEZ_PATH = "/livez"
READYZ_PATH = "/readyz"
# The route /readyz answers as: the proto's GetHealth rule.
HEALTH_PATH = "/health"
PROBE_PATHS = (LIVEZ_PATH, READYZ_PATH)
_READ_METHODS = ("GET", "HEAD")
_ALIVE_BODY = dumps({"status": "alive"})


class ProbeRoutes:
    """ASGI app serving /livez itself and /readyz through `app`'s /health; the rest to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or path not in PROBE_PATHS:
            await self._app(scope, receive, send)
            return
        scope[ROUTE_TEMPLATE_KEY] = path  # request metrics label probes by their own path
        if scope["method"] not in _READ_METHODS:
            await _answer(scope, send, 405, _method_not_allowed(scope), [(b"allow", b"GET")])
        elif path == LIVEZ_PATH:
            await _answer(scope, send, 200, _ALIVE_BODY)
        else:
            raw = HEALTH_PATH.encode()
            await self._app({**scope, "path": HEALTH_PATH, "raw_path": raw}, receive, send)


def _method_not_allowed(scope: Scope) -> bytes:
    detail = f"method {scope['method']} is not allowed on {scope['path']}; allowed: GET"
    return dumps(error_body(detail, METHOD_NOT_ALLOWED.error_type, scope["path"]))


async def _answer(
    scope: Scope,
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    # A HEAD answer carries the GET answer's headers only.
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
