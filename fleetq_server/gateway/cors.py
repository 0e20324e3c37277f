"""CORS for browsers on allowed web origins (FLEETQ_CORS_ORIGINS); without any, no CORS.

Without CORS headers a browser lets no other site read an answer or send a preflighted
request; the gateway's JSON-only bodies (415 otherwise) keep form posts out too. With
origins configured, requests from those origins get `Access-Control-Allow-Origin`, and
their preflight OPTIONS requests are answered here; every other origin gets nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from fleetq_server.gateway.asgi import ASGIApp, Message, Receive, Scope, Send

_ALLOWED_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE"
_ALLOWED_HEADERS = b"authorization, content-type, idempotency-key"
# How long a browser may cache a preflight answer.
_PREFLIGHT_MAX_AGE = b"600"
_VARY = (b"vary", b"origin")


def with_cors(app: ASGIApp, origins: Iterable[str]) -> ASGIApp:
    """`app` answering CORS for `origins` (e.g. `https://app.example.com`); `app` if none."""
    allowed = frozenset(origin.lower().encode("ascii") for origin in origins)
    return _Cors(app, allowed) if allowed else app


class _Cors:
    def __init__(self, app: ASGIApp, origins: frozenset[bytes]) -> None:
        self._app = app
        self._origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        origin = headers.get(b"origin")
        allowed = origin is not None and origin.lower() in self._origins
        if allowed and scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await _answer_preflight(origin, send)  # type: ignore[arg-type]
            return
        extra = [_VARY, (b"access-control-allow-origin", origin)] if allowed else [_VARY]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self._app(scope, receive, send_with_cors)


async def _answer_preflight(origin: bytes, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [
                _VARY,
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-methods", _ALLOWED_METHODS),
                (b"access-control-allow-headers", _ALLOWED_HEADERS),
                (b"access-control-max-age", _PREFLIGHT_MAX_AGE),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})
