"""The dashboard on a pod with FLEETQ_ADMIN_TOKEN and TLS: served over HTTPS like the API,
it asks for the token, keeps it for the tab, sends it as a bearer token, and asks again
when the pod refuses it."""

from __future__ import annotations

import secrets
import ssl
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.blackbox.contract import FAST_POD_ENV
from tests.blackbox.test_tls import write_key, write_self_signed_certificate
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

TOKEN = "admin-" + secrets.token_urlsafe(24)
TOKEN_KEY = "fleetq.adminToken"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for 127.0.0.1 (its key beside it as key.pem)."""
    directory = tmp_path_factory.mktemp("tls")
    write_self_signed_certificate(directory / "cert.pem", write_key(directory / "key.pem"))
    return directory / "cert.pem"


@pytest.fixture(scope="module")
def trust(certificate: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate))


@pytest.fixture(scope="module")
def pod(
    module_server_factory: ServerFactory, certificate: Path, trust: ssl.SSLContext
) -> ServerProcess:
    env = {
        **FAST_POD_ENV,
        "FLEETQ_ADMIN_TOKEN": TOKEN,
        "FLEETQ_TLS_CERT": str(certificate),
        "FLEETQ_TLS_KEY": str(certificate.with_name("key.pem")),
    }
    pod = module_server_factory(env=env, wait=False)  # its health check speaks plain HTTP

    def healthy() -> bool:
        assert pod.returncode is None, pod.log_tail()
        try:
            return httpx.get(f"{base_url(pod)}/health", verify=trust).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(healthy, timeout=30, description="/health over HTTPS")
    return pod


def base_url(pod: ServerProcess) -> str:
    return f"https://127.0.0.1:{pod.http_port}"


def sign_in(page: Page, token: str) -> None:
    dialog = page.get_by_role("dialog", name="Admin token")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Token").fill(token)
    dialog.get_by_role("button", name="Sign in").click()


def test_the_page_asks_for_the_token_and_asks_again_when_refused(
    page: Page, pod: ServerProcess, trust: ssl.SSLContext
) -> None:
    page.goto(f"{base_url(pod)}/ui/#/overview")
    sign_in(page, "wrong-" + TOKEN)
    dialog = page.get_by_role("dialog", name="Admin token")
    expect(dialog).to_contain_text("refused")
    sign_in(page, TOKEN)
    expect(dialog).to_be_hidden()
    expect(page.locator("body")).to_have_attribute("data-loaded", "overview")

    headers = {"Authorization": f"Bearer {TOKEN}"}
    stats = httpx.get(
        f"{base_url(pod)}/admin/queue", headers=headers, verify=trust, timeout=10
    ).json()
    expect(page.locator('[data-stat="current_leader"]')).to_have_text(stats["current_leader"])
    assert page.evaluate(f"sessionStorage.getItem({TOKEN_KEY!r})") == TOKEN

    # The token lasts for the tab: a reload asks nothing.
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-loaded", "overview")
    expect(dialog).to_be_hidden()


def test_a_token_the_pod_stops_accepting_brings_the_prompt_back(
    page: Page, pod: ServerProcess
) -> None:
    page.goto(f"{base_url(pod)}/ui/#/overview")
    sign_in(page, TOKEN)
    expect(page.locator("body")).to_have_attribute("data-loaded", "overview")
    # As if the pod's token had been rotated: the next refresh meets a 401.
    page.evaluate(f"sessionStorage.setItem({TOKEN_KEY!r}, 'rotated-away')")
    sign_in(page, TOKEN)
    expect(page.get_by_role("dialog", name="Admin token")).to_be_hidden()
    expect(page.locator("#live")).to_contain_text("Live")


def test_views_of_open_routes_need_no_token(page: Page, pod: ServerProcess) -> None:
    page.goto(f"{base_url(pod)}/ui/#/steps")
    expect(page.locator("body")).to_have_attribute("data-loaded", "steps")
    expect(page.get_by_role("dialog", name="Admin token")).to_be_hidden()
