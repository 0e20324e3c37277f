"""Only JSON request bodies are read (415 otherwise), so a web page cannot post a step with
a "simple" cross-site request; CORS headers appear only for configured origins."""

from __future__ import annotations

import httpx
import pytest

from tests.blackbox.contract import ERROR_KEYS
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess

STEP = b'{"type": "hello_world", "args": {"message": "from a web page"}}'
ALLOWED_ORIGIN = "https://console.example.com"
EVIL_ORIGIN = "http://evil.example"


def steps_stored(client: httpx.Client) -> int:
    stats = client.get("/admin/queue").json()
    return sum(stats[f"{state}_steps"] for state in ("pending", "claimed", "completed", "failed"))


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env={"FLEETQ_CORS_ORIGINS": ALLOWED_ORIGIN})


@pytest.fixture(scope="module")
def pod_without_cors(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory()


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        None,
    ],
)
def test_a_body_that_is_not_declared_json_gets_415_and_stores_nothing(
    client: httpx.Client, content_type: str | None
) -> None:
    headers = {"origin": EVIL_ORIGIN}
    if content_type is not None:
        headers["content-type"] = content_type
    before = steps_stored(client)

    response = client.post("/submit", content=STEP, headers=headers)

    assert response.status_code == 415, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["error_type"] == "validation_error"
    assert body["path"] == "/submit"
    assert "access-control-allow-origin" not in response.headers
    assert steps_stored(client) == before


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=utf-8", "application/merge-patch+json"],
)
def test_json_bodies_are_accepted(client: httpx.Client, content_type: str) -> None:
    response = client.post("/submit", content=STEP, headers={"content-type": content_type})
    assert response.status_code == 201, response.text


def test_a_post_without_a_body_needs_no_content_type(client: httpx.Client) -> None:
    response = client.post("/admin/recovery/run")
    assert response.status_code in (200, 403, 409), response.text


def test_no_cors_headers_without_configured_origins(pod_without_cors: ServerProcess) -> None:
    with httpx.Client(base_url=pod_without_cors.http_url, timeout=10) as client:
        preflight = client.options(
            "/submit",
            headers={"origin": ALLOWED_ORIGIN, "access-control-request-method": "POST"},
        )
        response = client.get("/health", headers={"origin": ALLOWED_ORIGIN})

    for answer in (preflight, response):
        assert not [name for name in answer.headers if name.startswith("access-control-")]


def test_a_configured_origin_gets_a_preflight_answer_and_the_allow_origin_header(
    client: httpx.Client,
) -> None:
    preflight = client.options(
        "/submit",
        headers={
            "origin": ALLOWED_ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    submitted = client.post(
        "/submit",
        content=STEP,
        headers={"origin": ALLOWED_ORIGIN, "content-type": "application/json"},
    )

    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"]
    assert submitted.status_code == 201, submitted.text
    assert submitted.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


def test_another_origin_gets_no_cors_headers(client: httpx.Client) -> None:
    preflight = client.options(
        "/submit", headers={"origin": EVIL_ORIGIN, "access-control-request-method": "POST"}
    )
    response = client.get("/health", headers={"origin": EVIL_ORIGIN})

    assert preflight.status_code != 204
    for answer in (preflight, response):
        assert "access-control-allow-origin" not in answer.headers
