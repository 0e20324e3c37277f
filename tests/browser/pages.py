"""What the browser tests read off the dashboard, and the REST calls they compare it with."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.support.server_process import ServerProcess


def open_view(page: Page, pod: ServerProcess, route: str) -> None:
    """Load the dashboard at `route` (e.g. `#/steps`) and wait for its first refresh."""
    page.goto(f"{pod.http_url}/ui/{route}")
    view = route.removeprefix("#/").split("?")[0].split("/")[0] or "overview"
    expect(page.locator("body")).to_have_attribute("data-loaded", view)


def number(text: str) -> int:
    """A number as the page shows it ("100,000")."""
    return int(text.replace(",", ""))


def submit(client: httpx.Client, step_type: str, args: dict[str, Any], **fields: Any) -> str:
    response = client.post("/submit", json={"type": step_type, "args": args, **fields})
    assert response.status_code == 201, response.text
    step_id: str = response.json()["step_id"]
    return step_id


def status(client: httpx.Client, step_id: str) -> dict[str, Any]:
    response = client.get(f"/status/{step_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def step_ids_shown(page: Page) -> list[str]:
    return page.locator("#steps-table tbody tr td:first-child a").all_inner_texts()


# Text colour and the first opaque background behind it, for every element matching a
# selector; the page's own JavaScript is not involved.
_COLOURS_JS = """(selector) => [...document.querySelectorAll(selector)].map((el) => {
    let back = el;
    let bg = getComputedStyle(back).backgroundColor;
    while (back.parentElement && (bg === "rgba(0, 0, 0, 0)" || bg === "transparent")) {
        back = back.parentElement;
        bg = getComputedStyle(back).backgroundColor;
    }
    return [getComputedStyle(el).color, bg];
})"""


def _luminance(rgb: str) -> float:
    """WCAG 2 relative luminance of a computed `rgb(r, g, b)` colour."""
    channels = [int(part) / 255 for part in rgb[rgb.index("(") + 1 : -1].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratios(page: Page, selector: str) -> list[float]:
    """The WCAG contrast ratio of each element matching `selector` against its background."""
    ratios = []
    for colour, background in page.evaluate(_COLOURS_JS, selector):
        light, dark = sorted((_luminance(colour), _luminance(background)), reverse=True)
        ratios.append((light + 0.05) / (dark + 0.05))
    return ratios
