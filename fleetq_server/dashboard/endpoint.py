"""GET /ui/...: the dashboard's packaged files, with a strict Content-Security-Policy.

The files are read once from the package (they ship in the wheel), so a request costs no
disk access. Each answer carries a strong ETag and `Cache-Control: no-cache`: a browser
revalidates on every load and gets a 304 until the pod runs a different version.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from fleetq_server.gateway.asgi import ASGIApp, Receive, Scope, Send
from fleetq_server.gateway.http_errors import METHOD_NOT_ALLOWED, error_body
from fleetq_server.gateway.response_encoding import dumps

PREFIX = "/ui"
# Scripts, styles, images and API calls from this origin only: no inline script, no
# eval, no third party, and never framed (clickjacking of the Cancel and Retry buttons).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'"
)
# Served path (below PREFIX) -> (file in static/, content type).
_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/icon.svg": ("icon.svg", "image/svg+xml"),
}
_READ_METHODS = ("GET", "HEAD")
_COMMON_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


@dataclass(frozen=True)
class _Asset:
    body: bytes
    content_type: bytes
    etag: bytes


def _load_assets() -> dict[str, _Asset]:
    static = resources.files(__package__).joinpath("static")
    assets = {}
    for path, (name, content_type) in _FILES.items():
        body = static.joinpath(name).read_bytes()
        etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
        assets[PREFIX + path] = _Asset(body, content_type.encode(), etag)
    return assets


class DashboardEndpoint:
    """ASGI app answering the dashboard's paths (see `dashboard_mounts`)."""

    def __init__(self) -> None:
        self._assets = _load_assets()

    @property
    def paths(self) -> tuple[str, ...]:
        """Every path this app answers: the files, and PREFIX itself (a redirect)."""
        return (PREFIX, *self._assets)

    @property
    def total_bytes(self) -> int:
        """The page's weight: every file, uncompressed."""
        return sum(len(asset.body) for asset in self._assets.values())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if method not in _READ_METHODS:
            detail = f"method {method} is not allowed on {path}; allowed: GET, HEAD"
            body = dumps(error_body(detail, METHOD_NOT_ALLOWED.error_type, path))
            headers = [(b"content-type", b"application/json"), (b"allow", b"GET, HEAD")]
            await _answer(scope, send, 405, headers, body)
            return
        asset = self._assets.get(path)
        if asset is None:  # PREFIX without its slash: relative URLs in the page need it
            await _answer(scope, send, 308, [(b"location", f"{PREFIX}/".encode())], b"")
            return
        headers = [
            (b"etag", asset.etag),
            (b"cache-control", b"no-cache"),
            (b"content-type", asset.content_type),
        ]
        if asset.etag in _if_none_match(scope):
            await _answer(scope, send, 304, headers, b"", length=False)
            return
        await _answer(scope, send, 200, headers, asset.body)


def dashboard_mounts() -> dict[str, ASGIApp]:
    """The gateway mounts (exact paths) that serve the dashboard."""
    endpoint = DashboardEndpoint()
    return dict.fromkeys(endpoint.paths, endpoint)


def _if_none_match(scope: Scope) -> list[bytes]:
    """The entity tags of the request's If-None-Match header (weak ones compared as strong,
    as RFC 9110 has it for this header)."""
    tags: list[bytes] = []
    for name, value in scope.get("headers", ()):
        if name == b"if-none-match":
            tags.extend(tag.strip().removeprefix(b"W/") for tag in value.split(b","))
    return tags


async def _answer(
    scope: Scope,
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    length: bool = True,
) -> None:
    head = [*headers, *_COMMON_HEADERS]
    if length:
        head.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": head})
    # A HEAD answer carries the GET answer's headers only.
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
