"""The dashboard on a pod with FLEETQ_ADMIN_TOKEN: it asks for the token, keeps it for the
tab, sends it as a bearer token, and asks again when the pod refuses it."""

from __future__ import annotations

import secrets

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.blackbox.contract import FAST_POD_ENV
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess

TOKEN = "admin-" + secrets.token_urlsafe(24)
TOKEN_KEY = "fleetq.adminToken"


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env={**FAST_POD_ENV, "FLEETQ_ADMIN_TOKEN": TOKEN})


def sign_in(page: Page, token: str) -> None:
    dialog = page.get_by_role("dialog", name="Admin token")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Token").fill(token)
    dialog.get_by_role("button", name="Sign in").click()


def test_the_page_asks_for_the_token_and_asks_again_when_refused(
    page: Page, pod: ServerProcess
) -> None:
    page.goto(f"{pod.http_url}/ui/#/overview")
    sign_in(page, "wrong-" + TOKEN)
    dialog = page.get_by_role("dialog", name="Admin token")
    expect(dialog).to_contain_text("refused")
    sign_in(page, TOKEN)
    expect(dialog).to_be_hidden()
    expect(page.locator("body")).to_have_attribute("data-loaded", "overview")

    headers = {"Authorization": f"Bearer {TOKEN}"}
    stats = httpx.get(f"{pod.http_url}/admin/queue", headers=headers, timeout=10).json()
    expect(page.locator('[data-stat="current_leader"]')).to_have_text(stats["current_leader"])
    assert page.evaluate(f"sessionStorage.getItem({TOKEN_KEY!r})") == TOKEN

    # The token lasts for the tab: a reload asks nothing.
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-loaded", "overview")
    expect(dialog).to_be_hidden()


def test_a_token_the_pod_stops_accepting_brings_the_prompt_back(
    page: Page, pod: ServerProcess
) -> None:
    page.goto(f"{pod.http_url}/ui/#/overview")
    sign_in(page, TOKEN)
    expect(page.locator("body")).to_have_attribute("data-loaded", "overview")
    # As if the pod's token had been rotated: the next refresh meets a 401.
    page.evaluate(f"sessionStorage.setItem({TOKEN_KEY!r}, 'rotated-away')")
    sign_in(page, TOKEN)
    expect(page.get_by_role("dialog", name="Admin token")).to_be_hidden()
    expect(page.locator("#live")).to_contain_text("Live")


def test_views_of_open_routes_need_no_token(page: Page, pod: ServerProcess) -> None:
    page.goto(f"{pod.http_url}/ui/#/steps")
    expect(page.locator("body")).to_have_attribute("data-loaded", "steps")
    expect(page.get_by_role("dialog", name="Admin token")).to_be_hidden()
