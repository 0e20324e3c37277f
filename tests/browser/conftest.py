"""The dashboard in a real browser: Debian's chromium driven by Playwright's sync API.

One browser per test module (starting it is the costly part); each test gets a fresh
context, so sessionStorage and cookies never leak between tests. No browser is ever
downloaded: Playwright launches /usr/bin/chromium (`make install` installs it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# How long a Playwright wait may take: a refresh comes every 2 s, so this is a few of them.
WAIT_MS = 15_000
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make install`", pytrace=False)
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a context of its own; JavaScript errors fail the test."""
    # The TLS pods' certificates are self-signed, made for the test.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, ignore_https_errors=True)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
