"""Browser fixtures: Debian's Chromium driven by Playwright's async API (no browser download).

`browser` is shared by the session; `visitors` opens isolated browser contexts (one per visitor,
each with its own sessionStorage) and records every console error and uncaught page error.
A visitor's context goes back to the worker's `contexts` pool when its test ends, wiped, so
that the next test's visitor skips starting a renderer process (about a second of CPU each).
"""

from __future__ import annotations

import json
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
# Full-page screenshots of the page tests' key moments, for a person to look at; taken only
# when asked for (PAGE_SCREENSHOTS=1): encoding them cost a few seconds of the suite's CPU.
TAKE_SCREENSHOTS = os.environ.get("PAGE_SCREENSHOTS") == "1"


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

    def __init__(self, page: Page, name: str, options: dict[str, Any]) -> None:
        self.page = page
        self.name = name
        self.options = options  # what its context was asked for (ContextPool.release)
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

    def detach(self) -> None:
        """Stop recording: the page is about to serve another test."""
        self.page.remove_listener("console", self._on_console)
        self.page.remove_listener("pageerror", self._on_page_error)

    async def screenshot(self, name: str) -> None:
        """artifacts/screenshots/NAME.png, with PAGE_SCREENSHOTS=1."""
        if TAKE_SCREENSHOTS:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


# Set on the page rather than the context, so a context made for one test serves another
# test that asks for different values of these.
PAGE_OPTIONS = ("viewport", "color_scheme", "reduced_motion")


class ContextPool:
    """A worker's idle browser contexts (each with its one page), by the options that only a
    new context can have (a phone's touch and scale, say). A context comes back wiped, or is
    closed if it cannot be: a test that opened another page in it, closed its page or crashed
    it leaves nothing behind for the next."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.idle: dict[str, list[Page]] = {}

    async def acquire(self, options: dict[str, Any]) -> Page:
        idle = self.idle.get(self._key(options))
        if not idle:
            context = await self.browser.new_context(**options)
            context.set_default_timeout(20_000)
            return await context.new_page()
        page = idle.pop()
        await page.set_viewport_size(options["viewport"])
        await page.emulate_media(
            media="screen",
            color_scheme=options.get("color_scheme", "light"),
            reduced_motion=options["reduced_motion"],
        )
        return page

    async def release(self, page: Page, options: dict[str, Any]) -> None:
        context = page.context
        try:
            if page.is_closed() or context.pages != [page]:
                raise RuntimeError("not reusable")
            # The storage of the origin the page is on (each test's server has its own port,
            # hence its own origin; this covers a port that comes round again), then
            # everything else the context could carry over.
            if page.url.startswith("http"):
                await page.evaluate("() => { sessionStorage.clear(); localStorage.clear(); }")
            await page.goto("about:blank")
            await context.clear_cookies()
            await context.clear_permissions()
            session = await context.new_cdp_session(page)
            await session.send("Network.clearBrowserCache")
            await session.detach()
        except Exception:  # whatever went wrong, the context is not reused
            await context.close()
            return
        self.idle.setdefault(self._key(options), []).append(page)

    async def close(self) -> None:
        for pages in self.idle.values():
            for page in pages:
                await page.context.close()
        self.idle.clear()

    @staticmethod
    def _key(options: dict[str, Any]) -> str:
        made_with = {name: value for name, value in options.items() if name not in PAGE_OPTIONS}
        return json.dumps(made_with, sort_keys=True)


@pytest.fixture(scope="session")
async def contexts(browser: Browser) -> AsyncIterator[ContextPool]:
    pool = ContextPool(browser)
    try:
        yield pool
    finally:
        await pool.close()


class Visitors:
    def __init__(self, pool: ContextPool) -> None:
        self.pool = pool
        self.opened: list[Visitor] = []

    async def open(self, url: str, name: str = "visitor", **context: Any) -> Visitor:
        """A new isolated visitor on `url`, once the page's stream is live."""
        # Visitors prefer reduced motion unless a test asks otherwise: the page's endless
        # pulses make headless Chromium draw 60 frames a second in software, which cost a
        # fifth of the suite's CPU. Tests of the motion itself pass
        # `reduced_motion="no-preference"`.
        options: dict[str, Any] = {
            "viewport": {"width": 1280, "height": 900},
            "reduced_motion": "reduce",
        }
        options.update(context)
        page = await self.pool.acquire(options)
        visitor = Visitor(page, name, options)
        self.opened.append(visitor)
        await page.goto(url)
        await page.wait_for_selector("#conn[data-state='live']")
        return visitor

    def assert_no_errors(self) -> None:
        problems = [f"{v.name}: {error}" for v in self.opened for error in v.errors]
        assert not problems, "\n".join(problems)

    async def close(self) -> None:
        for visitor in self.opened:
            visitor.detach()
            await self.pool.release(visitor.page, visitor.options)


@pytest.fixture
async def visitors(contexts: ContextPool) -> AsyncIterator[Visitors]:
    opened = Visitors(contexts)
    try:
        yield opened
    finally:
        await opened.close()
