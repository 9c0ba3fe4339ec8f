"""axe-core (bundled by axe-playwright-python) over the page in a real Chromium: zero violations
in light and dark, idle, mid-run and finished, on a desktop and on a phone viewport."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page, expect

from tests.conftest import GatedWorkflow, SettingsFactory
from tests.web.conftest import Visitors
from tests.web.test_page import PHONE, RUN_TIMEOUT_MS, choose_batches
from tests.web.test_page_runs import LOGS_404

pytestmark = pytest.mark.browser

AXE = Axe()
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 900}}


async def run_axe(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now. The 570 KB script is injected once per
    document (`Axe.run` injects it on every call)."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(AXE.axe_script)
    results = await page.evaluate("() => axe.run({resultTypes: ['violations']})")
    violations: list[dict[str, Any]] = results["violations"]
    return violations


async def violations(page: Page, moment: str) -> list[str]:
    """axe-core's violations in light and in dark, one readable line per failing node."""
    found: list[str] = []
    for scheme in ("light", "dark"):
        # Reduced motion: no colour transition is caught half-way when the scheme flips.
        await page.emulate_media(color_scheme=scheme, reduced_motion="reduce")
        for violation in await run_axe(page):
            for node in violation["nodes"]:
                found.append(
                    f"{moment}/{scheme}: {violation['id']} {node['target']}: "
                    f"{node.get('failureSummary', '')}"
                )
    return found


@pytest.mark.slow(5)
@pytest.mark.parametrize("device", ["desktop", "phone"])
async def test_axe_finds_no_violations_idle_mid_run_and_finished(
    device: str,
    make_settings: SettingsFactory,
    start_server: Any,
    visitors: Visitors,
    gated_workflow: Callable[[str], GatedWorkflow],
) -> None:
    # ANALYZE waits for the gate: the run stays mid-run until axe has looked at it.
    gate = gated_workflow("analyze.py")
    server = await start_server(make_settings(workflow_dir=gate.workflow_dir))
    context = PHONE if device == "phone" else DESKTOP
    visitor = await visitors.open(f"{server.http_url}/", f"axe-{device}", **context)
    visitor.expected_noise = LOGS_404
    page = visitor.page
    await choose_batches(page, 2)
    found = await violations(page, "idle")

    await page.click("#run-btn")
    await expect(page.locator("#graph .node[data-state='running']").first).to_be_visible()
    await expect(page.locator("#log .line").first).to_be_attached()
    found += await violations(page, "mid-run")
    await expect(page.locator("#run-status")).to_have_attribute("data-status", "running")

    gate.release()
    await expect(page.locator("#run-status")).to_have_attribute(
        "data-status", "succeeded", timeout=RUN_TIMEOUT_MS
    )
    await expect(page.locator("#report")).to_be_visible()
    await expect(page.locator("#history tbody tr")).to_have_count(1)
    await page.locator("#batch-details summary").click()
    # The timeline and a task's panel are part of the finished page.
    await page.locator("#timeline .tl-bar[data-task='ANALYZE (2)']").click()
    await expect(page.locator("#task-panel")).to_be_visible()
    found += await violations(page, "finished")
    assert found == [], "\n".join(found)
    visitors.assert_no_errors()


@pytest.mark.slow(6)
async def test_axe_finds_no_violations_on_a_run_address_while_it_replays(
    make_settings: SettingsFactory,
    start_server: Any,
    visitors: Visitors,
    open_stream: Callable[..., Any],
) -> None:
    server = await start_server(make_settings())
    # The run to look at is started through the API: the page's own start is tested above.
    stream = await open_stream(server.ws_url)
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        started = await client.post("/api/v1/demo/run", json={"batch_count": 2})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    complete = await stream.until_complete(run_id)
    assert complete["data"]["status"] == "succeeded", complete
    for device, context in (("desktop", DESKTOP), ("phone", PHONE)):
        visitor = await visitors.open(
            f"{server.http_url}/runs/{run_id}", f"axe-{device}", **context
        )
        visitor.expected_noise = LOGS_404
        page = visitor.page
        await expect(page.locator("#timeline .tl-bar")).to_have_count(5)
        await page.locator("#timeline .tl-bar[data-task='REPORT']").click()
        await expect(page.locator("#task-panel")).to_be_visible()
        found = await violations(page, f"archive-{device}")
        await page.click("#replay-btn")
        await expect(page.locator("#replay-play")).to_have_text("Replay again", timeout=30_000)
        await page.locator("#replay-scrub").fill("0")
        await expect(page.locator("#replay-play")).to_have_text("Play")
        found += await violations(page, f"replay-{device}")
        assert found == [], "\n".join(found)
    visitors.assert_no_errors()
