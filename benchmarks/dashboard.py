"""The dashboard's first render with 100,000 steps in the table, and its weight (issue 17:
under 1 s on this machine, at most 150 KB of HTML, CSS and JS).

One pod on a fresh database receives 100,000 steps through SubmitBatch over REST: some it
runs (hello_world; failing `sleep` steps that use up their retries; a few long sleeps
left running), the rest of types no pod runs, left pending across priorities. Then
Debian's chromium loads /ui/#/overview in a fresh browser context (cold cache) RUNS
times; the page marks `fleetq-first-render` when its first refresh has drawn everything
(counts, types, depth, pods, chart, cycles), and that mark's time since navigation start
is the figure. Optionally saves the README's screenshots (light and dark).

    .venv/bin/python -m benchmarks.dashboard --steps 100000 --runs 7 [--screenshots docs]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, sync_playwright

from benchmarks.harness import PodFleet, bench_session
from fleetq_server.dashboard import DashboardEndpoint
from tests.support.server_process import ServerProcess

CHROMIUM = "/usr/bin/chromium"
BATCH = 1000
CONCURRENT_BATCHES = 4
# Of the steps: how many the pod runs to completion, how many fail for good (three
# attempts each, for the attempts timeline), how many stay running; the rest stay pending.
COMPLETED = 20_000
FAILING = 300
RUNNING = 4
PENDING_TYPES = ("report", "email", "resize", "export", "invoice")
POD_ENV = {
    "FLEETQ_LOG_LEVEL": "WARNING",
    "FLEETQ_RETRY_BACKOFF_BASE": "0.01",
    "FLEETQ_SHUTDOWN_GRACE": "1",
    "FLEETQ_MAX_PARALLELISM": "50",
    "FLEETQ_CAPACITY_THRESHOLD": "0.8",
}
FIRST_RENDER_MARK = "fleetq-first-render"
VIEWPORT = {"width": 1280, "height": 1000}


@dataclass(frozen=True)
class Seeded:
    failed_step: str
    seconds: float


def _steps(total: int) -> list[dict[str, Any]]:
    """The steps to submit, in submit order."""
    steps: list[dict[str, Any]] = [
        {"type": "hello_world", "args": {"message": f"m{i}"}, "priority": i % 3}
        for i in range(COMPLETED)
    ]
    steps += [
        {"type": "sleep", "args": {"seconds": "soon"}, "max_retries": 2} for _ in range(FAILING)
    ]
    steps += [{"type": "sleep", "args": {"seconds": 3600}, "priority": 9}] * RUNNING
    types = itertools.cycle(PENDING_TYPES)
    steps += [
        {"type": next(types), "args": {"n": i}, "priority": (i % 7) - 1}
        for i in range(total - len(steps))
    ]
    return steps


async def _seed(pod: ServerProcess, total: int) -> Seeded:
    """Submit `total` steps and wait until the pod has finished the ones it runs."""
    steps = _steps(total)
    began = time.monotonic()
    limit = asyncio.Semaphore(CONCURRENT_BATCHES)
    async with httpx.AsyncClient(base_url=pod.http_url, timeout=120) as client:

        async def batch(chunk: list[dict[str, Any]]) -> list[str]:
            async with limit:
                response = await client.post("/submit/batch", json={"steps": chunk})
            response.raise_for_status()
            return [step["step_id"] for step in response.json()["steps"]]

        chunks = [steps[i : i + BATCH] for i in range(0, len(steps), BATCH)]
        ids = [i for chunk_ids in await asyncio.gather(*map(batch, chunks)) for i in chunk_ids]
        while True:  # a benchmark may poll: it measures after this, not during
            stats = (await client.get("/admin/queue")).json()
            if stats["completed_steps"] >= COMPLETED and stats["failed_steps"] >= FAILING:
                break
            await asyncio.sleep(0.5)
    return Seeded(failed_step=ids[COMPLETED], seconds=time.monotonic() - began)


def _first_render_ms(browser: Browser, url: str) -> tuple[float, int, dict[str, float]]:
    """One cold load of the overview: ms from navigation start to the first full render,
    the bytes of the page's own files (HTML, JS, CSS, icon) as received, and how long
    each API call of the first refresh took (ms, by path)."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(f"{url}/ui/#/overview")
        # A selector, not wait_for_function: the page's CSP forbids evaluating strings.
        page.wait_for_selector('body[data-loaded="overview"]', state="attached")
        mark: float = page.evaluate(
            f"performance.getEntriesByName({FIRST_RENDER_MARK!r})[0].startTime"
        )
        weight: int = page.evaluate(
            """() => performance.getEntriesByType("navigation")[0].decodedBodySize +
                performance.getEntriesByType("resource")
                    .filter((r) => r.name.includes("/ui/"))
                    .reduce((sum, r) => sum + r.decodedBodySize, 0)"""
        )
        calls: dict[str, float] = page.evaluate(
            """() => Object.fromEntries(performance.getEntriesByType("resource")
                .filter((r) => !r.name.includes("/ui/"))
                .map((r) => [new URL(r.name).pathname, r.duration]))"""
        )
        return mark, weight, calls
    finally:
        context.close()


def _screenshots(browser: Browser, url: str, step_id: str, directory: Path) -> list[Path]:
    """The overview, the steps and a step's detail, in the light and the dark scheme."""
    directory.mkdir(parents=True, exist_ok=True)
    saved = []
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport=VIEWPORT, color_scheme=scheme)
        page = context.new_page()
        for name, route in (
            ("overview", "#/overview"),
            ("steps", "#/steps"),
            ("step", f"#/step/{step_id}"),
        ):
            page.goto(f"{url}/ui/{route}")
            view = route[2:].split("/")[0]
            page.wait_for_selector(f'body[data-loaded="{view}"]', state="attached")
            path = directory / f"dashboard-{name}-{scheme}.png"
            page.screenshot(path=path)
            saved.append(path)
        context.close()
    return saved


def _browse(url: str, runs: int, step_id: str, shots: Path | None) -> dict[str, Any]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            _first_render_ms(browser, url)  # warm the pod's pool and the OS caches
            loads, alone = [], []
            for _ in range(runs):  # interleaved: each page load, then GET /admin/queue alone
                loads.append(_first_render_ms(browser, url))
                began = time.perf_counter()
                httpx.get(f"{url}/admin/queue", timeout=30).raise_for_status()
                alone.append((time.perf_counter() - began) * 1000)
            saved = _screenshots(browser, url, step_id, shots) if shots else []
        finally:
            browser.close()
    times = [ms for ms, _, _ in loads]
    paths = sorted({path for _, _, calls in loads for path in calls})
    api_ms = {
        path: round(statistics.median(calls[path] for _, _, calls in loads if path in calls), 1)
        for path in paths
    }
    return {
        "first_render_median_ms": round(statistics.median(times), 1),
        "first_render_max_ms": round(max(times), 1),
        "first_render_runs_ms": [round(ms, 1) for ms in times],
        "api_call_median_ms": api_ms,
        "queue_stats_alone_median_ms": round(statistics.median(alone), 1),
        "page_bytes_received": loads[0][1],
        "screenshots": [str(path) for path in saved],
    }


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--screenshots", type=Path, help="save the README's screenshots here")
    options = parser.parse_args(argv)
    if options.steps < COMPLETED + FAILING + RUNNING:
        parser.error(f"--steps must be at least {COMPLETED + FAILING + RUNNING}")
    async with (
        bench_session("fleetq-dashboard") as (postgres, log_dir),
        postgres.fresh_database() as database_url,
    ):
        with PodFleet(database_url, log_dir) as fleet:
            (pod,) = fleet.start(1, POD_ENV)
            seeded = await _seed(pod, options.steps)
            figures = await asyncio.to_thread(
                _browse, pod.http_url, options.runs, seeded.failed_step, options.screenshots
            )
    report = {
        "steps": options.steps,
        "seed_s": round(seeded.seconds, 1),
        **figures,
        "page_bytes_files": DashboardEndpoint().total_bytes,
        "load_average": os.getloadavg(),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
