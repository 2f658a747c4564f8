"""Headless Chromium (Debian's, driven by Playwright): load a page of the API as a person would and
record what a test asserts, every request it made, every console error, and what each plot drew.
scripts/report_screenshot.py uses it too, for the screenshot in docs/."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
FLAGS += ["--disable-component-update", "--disable-sync"]
# What a drawn plotly figure holds in its SVG: a trace of a scatter or bar chart, or parallel coordinates' axes.
DRAWN = "svg.main-svg g.trace, svg.main-svg g.parcoords, svg.main-svg g.y-axis"


@dataclass
class Visit:
    """What loading one page did."""

    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    drawn: dict[str, int] = field(default_factory=dict)  # plot id -> SVG elements it drew
    messages: list[str] = field(default_factory=list)  # the sentences shown where a plot had nothing to draw


def chromium() -> str | None:
    """Debian's chromium, if installed (scripts/install_test_tools.sh)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def visit(urls: dict[str, str], password: str, screenshots: Path) -> dict[str, Visit]:
    """Load each URL (its key names its screenshot, ``<key>.png`` under ``screenshots``), logged in with
    ``password`` through HTTP Basic, and wait until its plots are drawn."""
    from playwright.sync_api import sync_playwright

    executable = chromium()
    assert executable is not None, "chromium is not installed"
    visits: dict[str, Visit] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            context = browser.new_context(
                http_credentials={"username": "hpo", "password": password}, viewport={"width": 1200, "height": 900}
            )
            for key, url in urls.items():
                visits[key] = _visit(context.new_page(), url, screenshots / f"{key}.png")
        finally:
            browser.close()
    return visits


def _visit(page, url: str, screenshot: Path) -> Visit:  # type: ignore[no-untyped-def]
    seen = Visit()
    page.on("request", lambda request: seen.requests.append(request.url))
    page.on("console", lambda message: seen.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    answer = page.goto(url, wait_until="load")
    if not url.startswith("file:"):  # a file has no HTTP status
        assert answer is not None and answer.status == 200, f"{url}: {answer and answer.status}"
    page.wait_for_timeout(1_000)  # plotly draws after load
    seen.drawn = page.eval_on_selector_all(
        ".plotly-graph-div", f"divs => Object.fromEntries(divs.map(d => [d.id, d.querySelectorAll('{DRAWN}').length]))"
    )
    seen.messages = page.eval_on_selector_all("p.message", "ps => ps.map(p => p.id + ': ' + p.textContent)")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    return seen
