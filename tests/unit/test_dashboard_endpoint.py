"""The dashboard's files at /ui: content types, the CSP, ETags and revalidation, the
redirect of /ui, the page's weight; through the real HTTP app's mounts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from fleetq_server.dashboard import DashboardEndpoint, dashboard_mounts
from fleetq_server.dashboard.endpoint import CONTENT_SECURITY_POLICY

# Issue 17: at most 150 KB of HTML, CSS and JS, uncompressed.
MAX_PAGE_BYTES = 150 * 1024


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    mounts = dashboard_mounts()

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await mounts[scope["path"]](scope, receive, send)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as client:
        yield client


@pytest.mark.parametrize(
    ("path", "content_type", "marker"),
    [
        ("/ui/", "text/html; charset=utf-8", b"<!doctype html>"),
        ("/ui/app.js", "text/javascript; charset=utf-8", b'"use strict";'),
        ("/ui/app.css", "text/css; charset=utf-8", b":root"),
        ("/ui/icon.svg", "image/svg+xml", b"<svg"),
    ],
)
async def test_each_file_is_served_with_its_type_csp_and_no_cache(
    client: httpx.AsyncClient, path: str, content_type: str, marker: bytes
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert marker in response.content


async def test_ui_without_slash_redirects_to_the_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui")
    assert response.status_code == 308
    assert response.headers["location"] == "/ui/"


async def test_matching_etag_answers_304_without_a_body(client: httpx.AsyncClient) -> None:
    etag = (await client.get("/ui/app.js")).headers["etag"]
    again = await client.get("/ui/app.js", headers={"If-None-Match": f'"other", W/{etag}'})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    stale = await client.get("/ui/app.js", headers={"If-None-Match": '"other"'})
    assert stale.status_code == 200


async def test_files_get_different_etags(client: httpx.AsyncClient) -> None:
    tags = {(await client.get(path)).headers["etag"] for path in ("/ui/", "/ui/app.js")}
    assert len(tags) == 2


async def test_head_has_the_get_headers_and_no_body(client: httpx.AsyncClient) -> None:
    get, head = await client.get("/ui/app.css"), await client.head("/ui/app.css")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]


async def test_writes_are_refused_with_the_error_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/ui/", content=b"{}")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json()["error_type"] == "method_not_allowed"
    assert response.json()["path"] == "/ui/"


def test_the_page_weighs_at_most_150_kb() -> None:
    assert 0 < DashboardEndpoint().total_bytes <= MAX_PAGE_BYTES
