"""The dashboard against a live pod without an admin token: every view loads, the numbers it
shows are the API's, and cancel and retry from the page change the step."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.blackbox.contract import FAST_POD_ENV
from tests.browser.pages import (
    contrast_ratios,
    number,
    open_view,
    status,
    step_ids_shown,
    submit,
)
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

# No pod runs this type: its steps stay pending until the tests act on them.
IDLE_TYPE = "browser_idle"
COMPLETED_STEPS = 25


@dataclass(frozen=True)
class Seeded:
    """The module's data, settled: completed, failed, running and pending steps."""

    completed: list[str]
    failed: str
    running: str
    keyed: str
    key: str


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    # A short grace: the running `sleep` step would hold the pod 30 s at teardown.
    return module_server_factory(env={**FAST_POD_ENV, "FLEETQ_SHUTDOWN_GRACE": "0.5"})


@pytest.fixture(scope="module")
def api(pod: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pod.http_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def seeded(api: httpx.Client) -> Seeded:
    completed = [
        submit(api, "hello_world", {"message": f"hi {i}"}, priority=i % 3)
        for i in range(COMPLETED_STEPS)
    ]
    failed = submit(api, "sleep", {"seconds": "soon"}, max_retries=0)
    running = submit(api, "sleep", {"seconds": 600})
    key = "order-1234"
    keyed = submit(api, IDLE_TYPE, {"n": 1}, priority=7, idempotency_key=key)
    submit(api, IDLE_TYPE, {"n": 2}, priority=-2)
    wait_until(
        lambda: (
            all(status(api, s)["status"] == "completed" for s in completed)
            and status(api, failed)["status"] == "failed"
            and status(api, running)["status"] == "claimed"
        ),
        timeout=30,
        description="the seeded steps to settle",
    )
    return Seeded(completed, failed, running, keyed, key)


def test_overview_shows_the_queue_statistics_of_the_api(
    page: Page, pod: ServerProcess, api: httpx.Client, seeded: Seeded
) -> None:
    open_view(page, pod, "#/overview")
    stats = api.get("/admin/queue").json()
    for field in ("pending_steps", "claimed_steps", "completed_steps", "failed_steps"):
        shown = page.locator(f'[data-stat="{field}"]')
        expect(shown).to_have_text(f"{stats[field]:,}")
    assert stats["completed_steps"] >= COMPLETED_STEPS and stats["failed_steps"] >= 1
    expect(page.locator('[data-stat="current_leader"]')).to_have_text(stats["current_leader"])

    types = page.locator("#types-table tbody tr")
    expect(types).to_have_count(len(stats["steps_by_type"]))
    shown_types = {
        row.locator("td").nth(0).inner_text(): number(row.locator("td").nth(1).inner_text())
        for row in types.all()
    }
    assert shown_types == stats["steps_by_type"]

    depth = page.locator("#depth-table tbody tr")
    expect(depth).to_have_count(len(stats["queue_depth_by_priority"]))
    shown_depth = {
        row.locator("td").nth(0).inner_text(): number(row.locator("td").nth(1).inner_text())
        for row in depth.all()
    }
    assert shown_depth == stats["queue_depth_by_priority"]


def test_overview_lists_each_pod_with_its_capacity_and_the_leader_marked(
    page: Page, pod: ServerProcess, api: httpx.Client, seeded: Seeded
) -> None:
    open_view(page, pod, "#/overview")
    stats = api.get("/admin/queue").json()
    (pod_id, capacity), *_ = stats["pod_capacity"].items()
    row = page.locator("#pods-table tbody tr", has_text=pod_id)
    expect(row).to_have_count(1)
    expect(row.locator(".leader")).to_be_visible()  # the only pod leads
    expect(row.locator("td").nth(2)).to_have_text(f"{capacity['current']} / {capacity['max']}")
    expect(row.locator("td").nth(3)).to_have_text(re.compile(r"^\d+(\.\d)? (ms|s)$"))


def test_overview_chart_totals_the_api_throughput(
    page: Page, pod: ServerProcess, api: httpx.Client, seeded: Seeded
) -> None:
    minutes = api.get("/admin/throughput", params={"minutes": 60}).json()["minutes"]
    completed = sum(minute["completed_steps"] for minute in minutes)
    failed = sum(minute["failed_steps"] for minute in minutes)
    assert completed >= COMPLETED_STEPS and failed >= 1
    open_view(page, pod, "#/overview")
    chart = page.get_by_role("img", name=re.compile("^Last 60 minutes"))
    expect(chart).to_have_attribute(
        "aria-label", f"Last 60 minutes: {completed:,} completed, {failed:,} failed"
    )
    expect(chart.locator("g.bars > g")).to_have_count(len(minutes))


def test_overview_lists_the_recovery_cycles_of_the_api(
    page: Page, pod: ServerProcess, api: httpx.Client
) -> None:
    ran = api.post("/admin/recovery/run", json={"force": True})
    assert ran.status_code == 200, ran.text
    cycles = api.get("/admin/recovery/cycles", params={"page_size": 20}).json()["cycles"]
    open_view(page, pod, "#/overview")
    rows = page.locator("#cycles-table tbody tr")
    expect(rows).to_have_count(len(cycles))
    expect(rows.first.locator("td").nth(1)).to_have_text(cycles[0]["leader_pod_id"])
    expect(rows.first.locator("td").nth(2)).to_have_text("manual")


def test_steps_view_pages_through_the_api_listing(
    page: Page, pod: ServerProcess, api: httpx.Client, seeded: Seeded
) -> None:
    first = api.get("/steps", params={"status": "completed", "page_size": 20}).json()
    second = api.get(
        "/steps",
        params={"status": "completed", "page_size": 20, "page_token": first["next_page_token"]},
    ).json()
    open_view(page, pod, "#/steps?status=completed&page_size=20")
    expect(page.locator("#steps-table tbody tr")).to_have_count(20)
    assert step_ids_shown(page) == [step["step_id"] for step in first["steps"]]
    expect(page.get_by_role("checkbox", name="completed")).to_be_checked()

    page.get_by_role("button", name="Older →").click()
    expect(page.locator("#page-number")).to_have_text("Page 2")
    expect(page.locator("#steps-table tbody tr")).to_have_count(len(second["steps"]))
    assert step_ids_shown(page) == [step["step_id"] for step in second["steps"]]

    page.get_by_role("button", name="← Newer").click()
    expect(page.locator("#page-number")).to_have_text("Page 1")
    expect(page.locator("#steps-table tbody tr").first).to_contain_text(
        first["steps"][0]["step_id"]
    )


def test_status_filter_from_the_form_shows_only_those_steps(
    page: Page, pod: ServerProcess, seeded: Seeded
) -> None:
    open_view(page, pod, "#/steps")
    page.get_by_role("checkbox", name="failed").check()
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"#/steps\?status=failed$"))
    expect(page.locator("#steps-table tbody tr")).to_have_count(1)
    expect(page.locator("#steps-table tbody tr")).to_contain_text(seeded.failed)


def test_created_between_filters_reach_the_api_as_utc_times(
    browser: Browser, pod: ServerProcess, seeded: Seeded
) -> None:
    # Midnight in Paris, in winter, is 23:00 UTC the day before.
    context = browser.new_context(timezone_id="Europe/Paris")
    try:
        page = context.new_page()
        open_view(page, pod, "#/steps")
        page.get_by_label("Created before").fill("2020-01-01T00:00:00")
        page.get_by_role("button", name="Apply").click()
        expect(page).to_have_url(re.compile(r"created_before=2019-12-31T23%3A00%3A00\.000Z"))
        expect(page.locator("#steps-empty")).to_be_visible()
        expect(page.locator("#steps-table tbody tr")).to_have_count(0)

        page.get_by_label("Created before").fill("")
        page.get_by_label("Created after").fill("2020-01-01T00:00:00")
        page.get_by_role("button", name="Apply").click()
        expect(page).to_have_url(re.compile(r"created_after=2019-12-31T23%3A00%3A00\.000Z"))
        expect(page.get_by_role("link", name=seeded.failed)).to_be_visible()
        # The form shows the filter back in local time.
        expect(page.get_by_label("Created after")).to_have_value(
            re.compile(r"^2020-01-01T00:00(:00)?$")
        )
    finally:
        context.close()


def test_search_finds_a_step_by_id_and_by_idempotency_key(
    page: Page, pod: ServerProcess, seeded: Seeded
) -> None:
    open_view(page, pod, "#/steps")
    search = page.get_by_label("Step id or idempotency key")
    for query, expected in ((seeded.failed, seeded.failed), (seeded.key, seeded.keyed)):
        search.fill(query)
        search.press("Enter")
        # The exact list: the previous search's single row must not pass for this one's.
        expect(page.locator("#steps-table tbody tr td:first-child a")).to_have_text([expected])
    search.fill("no-such-step-or-key")
    search.press("Enter")
    expect(page.locator("#steps-empty")).to_be_visible()


def test_step_detail_shows_payload_result_error_and_attempts(
    page: Page, pod: ServerProcess, api: httpx.Client, seeded: Seeded
) -> None:
    done = status(api, seeded.completed[0])
    open_view(page, pod, "#/steps")
    page.get_by_role("link", name=seeded.completed[0]).click()
    expect(page.locator("#step-id")).to_have_text(seeded.completed[0])
    expect(page.locator('[data-fact="status"]')).to_have_text("completed")
    expect(page.locator("#step-args")).to_contain_text('"message": "hi 0"')
    expect(page.locator("#step-result")).to_contain_text(done["result"]["greeting"])
    expect(page.locator("#attempts li")).to_have_count(len(done["attempts"]))
    expect(page.locator("#attempts li").first).to_contain_text("completed")

    failed = status(api, seeded.failed)
    open_view(page, pod, f"#/step/{seeded.failed}")
    expect(page.locator("#step-error")).to_have_text(
        f"{failed['error']['type']}: {failed['error']['message']}"
    )
    expect(page.locator("#attempts .why")).to_contain_text(failed["error"]["type"])
    expect(page.get_by_role("button", name="Cancel step…")).to_be_disabled()
    expect(page.get_by_role("button", name="Retry step…")).to_be_enabled()


def test_cancel_then_retry_from_the_page_change_the_step(
    page: Page, pod: ServerProcess, api: httpx.Client, seeded: Seeded
) -> None:
    step_id = submit(api, IDLE_TYPE, {"n": 3})
    open_view(page, pod, f"#/step/{step_id}")
    expect(page.locator('[data-fact="status"]')).to_have_text("pending")

    # Dismissing the confirmation changes nothing.
    page.get_by_role("button", name="Cancel step…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(step_id)
    dialog.get_by_role("button", name="Keep as is").click()
    expect(dialog).to_be_hidden()
    assert status(api, step_id)["status"] == "pending"

    page.get_by_role("button", name="Cancel step…").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel step").click()
    expect(page.locator("#action-result")).to_have_text("Done: the step is cancelled.")
    assert status(api, step_id)["status"] == "cancelled"
    expect(page.locator('[data-fact="status"]')).to_have_text("cancelled")

    page.get_by_role("button", name="Retry step…").click()
    page.get_by_role("dialog").get_by_role("button", name="Retry step").click()
    expect(page.locator("#action-result")).to_have_text("Done: the step is pending.")
    assert status(api, step_id)["status"] == "pending"
    expect(page.get_by_role("button", name="Cancel step…")).to_be_enabled()


def test_live_refresh_adds_new_steps_without_rebuilding_the_rows(
    page: Page, pod: ServerProcess, api: httpx.Client, seeded: Seeded
) -> None:
    open_view(page, pod, f"#/steps?type={IDLE_TYPE}")
    old_row = page.locator("#steps-table tbody tr").last.element_handle()
    step_id = submit(api, IDLE_TYPE, {"n": 4})
    expect(page.locator("#steps-table tbody tr").first).to_contain_text(step_id)
    assert old_row.evaluate("row => row.isConnected"), "the refresh replaced an unchanged row"


def test_workers_view_lists_remote_workers_as_the_api_does(
    page: Page, pod: ServerProcess, api: httpx.Client, seeded: Seeded
) -> None:
    submit(api, "browser_remote", {})
    claimed = api.post(
        "/workers/claim", json={"worker_id": "worker-a", "types": ["browser_remote"]}
    )
    assert claimed.status_code == 200 and len(claimed.json()["steps"]) == 1, claimed.text
    open_view(page, pod, "#/workers")
    workers = api.get("/admin/queue").json()["workers"]
    rows = page.locator("#workers-table tbody tr")
    expect(rows).to_have_count(len(workers))
    row = rows.filter(has_text="worker-a")
    expect(row.locator("td").nth(1)).to_have_text("browser_remote")
    expect(row.locator("td").nth(2)).to_have_text("1")


def test_schedules_view_lists_schedules_and_type_limits(
    page: Page, pod: ServerProcess, api: httpx.Client
) -> None:
    created = api.post(
        "/admin/schedules",
        json={"name": "nightly", "cron": "0 3 * * *", "type": IDLE_TYPE, "paused": True},
    )
    assert created.status_code in (200, 201), created.text
    limit = api.put("/admin/limits/browser_limited", json={"max_concurrency": 3})
    assert limit.status_code == 200, limit.text
    open_view(page, pod, "#/schedules")
    schedule = page.locator("#schedules-table tbody tr", has_text="nightly")
    expect(schedule.locator("td").nth(1)).to_have_text("cron 0 3 * * * (UTC)")
    expect(schedule.locator("td").nth(3)).to_have_text("paused")
    limited = page.locator("#limits-table tbody tr", has_text="browser_limited")
    expect(limited.locator("td").nth(1)).to_have_text("3")
    expect(limited.locator("td").nth(4)).to_have_text("0")


def test_every_view_is_reachable_from_the_keyboard(page: Page, pod: ServerProcess) -> None:
    open_view(page, pod, "#/overview")
    for name, view in (("Steps", "steps"), ("Workers", "workers"), ("Schedules", "schedules")):
        page.get_by_role("link", name=name, exact=True).focus()
        page.keyboard.press("Enter")
        expect(page.locator("body")).to_have_attribute("data-loaded", view)
        expect(page.get_by_role("link", name=name, exact=True)).to_have_attribute(
            "aria-current", "page"
        )


# Text the overview and the steps view show, by kind; WCAG AA asks 4.5:1 of normal text.
TEXT_SELECTORS = {
    "#/overview": (".top nav a", ".card dt", ".card dd", "th", "td", ".leader", ".legend"),
    "#/steps": (".badge", "td a", ".toolbar label", "legend", "button:not(:disabled)"),
}
AA_RATIO = 4.5


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_keeps_aa_contrast_in_both_colour_schemes(
    page: Page, pod: ServerProcess, seeded: Seeded, scheme: str
) -> None:
    page.emulate_media(color_scheme=scheme)
    for route, selectors in TEXT_SELECTORS.items():
        open_view(page, pod, route)
        for selector in selectors:
            ratios = contrast_ratios(page, selector)
            assert ratios, f"nothing matches {selector} on {route}"
            assert min(ratios) >= AA_RATIO, f"{selector} on {route} ({scheme}): {min(ratios):.2f}"
    page.evaluate("document.querySelector('#banner').hidden = false")
    (ratio,) = contrast_ratios(page, "#banner")
    assert ratio >= AA_RATIO, f"the error banner ({scheme}): {ratio:.2f}"
