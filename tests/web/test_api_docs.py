"""/docs renders in Chromium with every request that leaves the service blocked."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Request, Route

from tests.live_server import LiveServer

pytestmark = pytest.mark.browser


class Offline:
    """A browser context that only reaches `origin`; everything else is aborted and noted."""

    def __init__(self, context: BrowserContext, origin: str) -> None:
        self.context = context
        self.origin = origin
        self.blocked: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []

    async def route(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(self.origin + "/") or url.startswith("data:"):
            await route.continue_()
        else:
            self.blocked.append(url)
            await route.abort("internetdisconnected")

    def on_failed(self, request: Request) -> None:
        self.failed.append(f"{request.url}: {request.failure}")

    async def open(self, path: str) -> Page:
        page = await self.context.new_page()
        page.on("requestfailed", self.on_failed)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        await page.goto(self.origin + path)
        return page


@pytest.fixture
async def offline(browser: Browser, server: LiveServer) -> AsyncIterator[Offline]:
    context = await browser.new_context()
    context.set_default_timeout(20_000)
    offline = Offline(context, server.http_url)
    await context.route("**/*", offline.route)
    try:
        yield offline
    finally:
        await context.close()


async def test_swagger_ui_renders_offline(offline: Offline) -> None:
    page = await offline.open("/docs")
    # Rendered from the OpenAPI document: the title and the operations of the API.
    title = page.locator(".swagger-ui .info .title")
    await title.filter(has_text="nextflow-k8s-service").wait_for()
    await page.locator(".opblock-summary-path[data-path='/api/v1/demo/run']").first.wait_for()
    await page.locator(".opblock-summary-path[data-path='/api/v1/demo/history']").wait_for()
    assert (offline.blocked, offline.failed, offline.errors) == ([], [], [])
    # Its assets come from the service itself (fastapi-offline's copy of swagger-ui-dist).
    sources = await page.evaluate(
        "[...document.querySelectorAll('script[src], link[href]')].map(e => e.src || e.href)"
    )
    assert sources and all(source.startswith(offline.origin + "/") for source in sources)
