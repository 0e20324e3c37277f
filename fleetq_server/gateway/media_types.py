"""Which request bodies the gateway reads: JSON by their Content-Type, and nothing else.

Refusing other types (415) keeps browsers' "simple" cross-site requests out: a web page
can post text/plain or a form to any address without asking, but not application/json.
"""

from __future__ import annotations

from collections.abc import Iterable

_UTF8 = ("utf-8", "utf8")


def json_body_refusal(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why a request's body is not one to read as JSON, or None when it is (or it has none).

    Accepted: `application/json` and any `<type>/<subtype>+json`, with an optional
    charset that must be UTF-8. A request without a body needs no Content-Type.
    """
    content_type: bytes | None = None
    has_body = False
    for header, raw in headers:  # ASGI header names are lower-case
        if header == b"content-type":
            content_type = raw
        elif header == b"content-length":
            has_body = has_body or raw.strip() != b"0"
        elif header == b"transfer-encoding":
            has_body = True
    if content_type is None:
        return "a request body needs Content-Type: application/json" if has_body else None
    media_type, _, parameters = content_type.decode("latin-1").partition(";")
    media_type = media_type.strip().lower()
    kind, _, subtype = media_type.partition("/")
    is_json_suffix = bool(kind) and subtype.endswith("+json") and subtype != "+json"
    if media_type != "application/json" and not is_json_suffix:
        return f"Content-Type {media_type!r} is not supported: send application/json"
    for parameter in parameters.split(";"):
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in _UTF8:
            return "JSON request bodies must be UTF-8"
    return None
