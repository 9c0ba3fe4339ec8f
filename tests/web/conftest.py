"""Browser fixtures: Debian's Chromium driven by Playwright's async API (no browser download).

`browser` is shared by the session; `visitors` opens isolated browser contexts (one per visitor,
each with its own sessionStorage) and records every console error and uncaught page error.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Error,
    Page,
    async_playwright,
)

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


def _chromium_path() -> str:
    """Path of Chromium; skips the test without it, or fails it if REQUIRE_SERVICES=1."""
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if found:
        return found
    reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and REQUIRE_SERVICES=1")
    pytest.skip(reason)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = _chromium_path()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


class Visitor:
    """One browser context and its page, with the errors the page reported."""

    def __init__(self, page: Page, name: str) -> None:
        self.page = page
        self.name = name
        self.errors: list[str] = []
        # Console errors a scenario provokes on purpose (the browser logs every refused
        # WebSocket connection itself; page code cannot catch or silence that). Matched against
        # the message, and against the message followed by its URL in parentheses.
        self.expected_noise: re.Pattern[str] | None = None
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        text = message.text
        located = f"{text} ({message.location.get('url', '')})"
        noise = self.expected_noise
        if noise is not None and (noise.search(text) or noise.search(located)):
            return
        self.errors.append(f"console: {located}")

    def _on_page_error(self, error: Error) -> None:
        self.errors.append(f"pageerror: {error}")

    async def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


class Visitors:
    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.opened: list[Visitor] = []

    async def open(self, url: str, name: str = "visitor", **context: Any) -> Visitor:
        """A new isolated visitor on `url`, once the page's stream is live."""
        options: dict[str, Any] = {"viewport": {"width": 1280, "height": 900}}
        options.update(context)
        browser_context = await self.browser.new_context(**options)
        browser_context.set_default_timeout(20_000)
        page = await browser_context.new_page()
        visitor = Visitor(page, name)
        self.opened.append(visitor)
        await page.goto(url)
        await page.wait_for_selector("#conn[data-state='live']")
        return visitor

    def assert_no_errors(self) -> None:
        problems = [f"{v.name}: {error}" for v in self.opened for error in v.errors]
        assert not problems, "\n".join(problems)

    async def close(self) -> None:
        for visitor in self.opened:
            await visitor.page.context.close()


@pytest.fixture
async def visitors(browser: Browser) -> AsyncIterator[Visitors]:
    opened = Visitors(browser)
    try:
        yield opened
    finally:
        await opened.close()
