"""The demo page in a real Chromium against a real uvicorn: run, attach, cancel, reconnect, phone.

Every scenario also checks that the page logged no console error and threw no uncaught error.
Screenshots of the running and finished states land in artifacts/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.conftest import GatedWorkflow, SettingsFactory
from tests.web.conftest import Visitor, Visitors

pytestmark = pytest.mark.browser

RUN_ID = re.compile(r"^r[0-9a-f]{11}$")
RUN_TIMEOUT_MS = 45_000
PHONE = {"viewport": {"width": 375, "height": 812}, "is_mobile": True, "has_touch": True}


async def choose_batches(page: Page, count: int) -> None:
    await page.locator("#batch-count").fill(str(count))
    await expect(page.locator("#batch-count-out")).to_have_text(str(count))
    await expect(page.locator("#pv-tasks")).to_have_text(str(2 * count + 1))


async def shown_run_id(page: Page) -> str:
    await expect(page.locator("#run-id")).to_have_text(RUN_ID)
    return (await page.locator("#run-id").text_content() or "").strip()


async def task_states(page: Page) -> dict[str, str]:
    states: dict[str, str] = await page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#graph .node')]
              .map((node) => [node.dataset.task, node.dataset.state]))"""
    )
    return states


async def expect_finished(page: Page, status: str, batches: int) -> None:
    await expect(page.locator("#run-status")).to_have_attribute(
        "data-status", status, timeout=RUN_TIMEOUT_MS
    )
    await expect(page.locator("#graph .node")).to_have_count(2 * batches + 1)
    if status == "succeeded":
        await expect(page.locator("#graph .node[data-state='succeeded']")).to_have_count(
            2 * batches + 1
        )
        await expect(page.locator("#percent")).to_have_text("100%")
        await expect(page.locator("#report")).to_be_visible()
        await expect(page.locator("#report .chart-svg .mark")).to_have_count(batches)


async def horizontal_overflow(page: Page) -> list[str]:
    """What sticks out of the viewport to the right (empty when there is no horizontal scroll)."""
    found: list[str] = await page.evaluate(
        """() => {
            const width = window.innerWidth;
            const out = [];
            const root = document.documentElement;
            if (root.scrollWidth > width) out.push(`document ${root.scrollWidth} > ${width}`);
            for (const node of document.querySelectorAll('body *')) {
              if (node.closest('[hidden], .sr-only, .skip-link')) continue;
              const box = node.getBoundingClientRect();
              if (box.width && box.right > width + 0.5) {
                const name = `${node.tagName.toLowerCase()}#${node.id}.${node.className}`;
                out.push(`${name} right=${box.right}`);
              }
            }
            for (const wrap of document.querySelectorAll('.table-wrap')) {
              if (!wrap.closest('[hidden]') && wrap.scrollWidth > wrap.clientWidth + 1) {
                out.push(`table scrolls: ${wrap.parentElement.className}`);
              }
            }
            return out.slice(0, 20);
        }"""
    )
    return found


async def test_run_fills_the_lanes_then_shows_report_and_history(
    make_settings: SettingsFactory, start_server: Any, visitors: Visitors
) -> None:
    server = await start_server(make_settings())
    visitor = await visitors.open(f"{server.http_url}/", "starter", color_scheme="dark")
    page = visitor.page

    await expect(page.locator("#executor-badge")).to_have_text("local")
    await expect(page.locator("#history-empty")).to_be_visible()
    await choose_batches(page, 3)
    # Before any run the graph previews the lanes the chosen batch count would draw.
    await expect(page.locator("#graph svg")).to_have_attribute("data-mode", "preview")
    await expect(page.locator("#graph .node")).to_have_count(7)
    # The local executor runs processes: no pods, no quota in what the visitor reads.
    await expect(page.locator("#pv-pods-label")).to_have_text("Processes")
    await expect(page.locator("#pv-quota")).to_be_hidden()
    await expect(page.locator("#preview-summary")).to_contain_text("at most 3 tasks at once")
    await expect(page.locator("#preview")).not_to_contain_text("pod")
    await visitor.screenshot("idle-desktop-dark")

    await page.fill("#triggered-by", "<b>ada</b>")
    await page.click("#run-btn")
    await expect_finished(page, "succeeded", 3)
    run_id = await shown_run_id(page)
    await expect(page.locator("#graph svg")).to_have_attribute("data-mode", "run")
    states = await task_states(page)
    assert set(states) == {
        *(f"{process} ({i})" for process in ("GENERATE", "ANALYZE") for i in (1, 2, 3)),
        "REPORT",
    }
    assert set(states.values()) == {"succeeded"}
    for process in ("GENERATE", "ANALYZE", "REPORT"):
        row = page.locator(f".proc[data-process='{process.lower()}'] .proc-count")
        await expect(row).to_have_text("1 / 1" if process == "REPORT" else "3 / 3")

    # Server text is inserted as text, never as markup.
    await expect(page.locator("#run-by")).to_have_text("<b>ada</b>")
    assert await page.locator("#run-by b").count() == 0

    # The log shows every producer, and the filter narrows it to one.
    for source in ("controller", "GENERATE (2)", "ANALYZE (3)", "REPORT"):
        await expect(page.locator(f"#log .line[data-source='{source}']").first).to_be_attached()
    await page.select_option("#log-filter", "kind:analyze")
    shown = await page.evaluate(
        "[...document.querySelectorAll('#log .line:not([hidden]) .src')].map(n => n.textContent)"
    )
    assert shown
    assert all(source.startswith("ANALYZE") for source in shown)
    await page.select_option("#log-filter", "task:GENERATE (2)")
    shown = await page.evaluate(
        "[...document.querySelectorAll('#log .line:not([hidden]) .src')].map(n => n.textContent)"
    )
    assert shown
    assert set(shown) == {"GENERATE (2)"}
    await page.select_option("#log-filter", "")

    # The report: one mark per batch, and totals matching report.json.
    response = await page.request.get(f"{server.http_url}/api/v1/demo/runs/{run_id}/report")
    body = await response.json()
    await expect(page.locator("#totals tbody td").first).to_have_text("3")
    await expect(page.locator("#totals tbody td").nth(1)).to_have_text(
        f"{body['totals']['count']:,}"
    )
    await expect(page.locator("#report-link")).to_have_attribute(
        "href", f"/api/v1/demo/runs/{run_id}/report"
    )

    # The history lists the run with a link to its report.
    row = page.locator(f"#history tbody tr[data-run-id='{run_id}']")
    await expect(row).to_have_attribute("data-status", "succeeded")
    await expect(row.locator(".by")).to_have_text("<b>ada</b>")
    href = await row.locator("a", has_text="report.json").get_attribute("href")
    assert href == f"/api/v1/demo/runs/{run_id}/report"
    linked = await (await page.request.get(f"{server.http_url}{href}")).json()
    assert linked["run_id"] == run_id
    assert len(linked["batches"]) == 3

    await expect(page.locator("#run-btn")).to_be_enabled()
    await expect(page.locator("#cancel-btn")).to_be_hidden()
    await visitor.screenshot("finished-desktop-dark")
    visitors.assert_no_errors()


async def test_second_visitor_attaches_mid_run_and_ends_in_the_same_state(
    make_settings: SettingsFactory,
    start_server: Any,
    visitors: Visitors,
    gated_workflow: Callable[[str], GatedWorkflow],
) -> None:
    # ANALYZE waits for the gate, so the run is still going while the watcher arrives and
    # looks (the controls show the run only while it is active), however loaded the machine.
    gate = gated_workflow("analyze.py")
    server = await start_server(make_settings(workflow_dir=gate.workflow_dir))
    starter = await visitors.open(
        f"{server.http_url}/", "starter", color_scheme="dark", reduced_motion="no-preference"
    )
    await choose_batches(starter.page, 3)
    await starter.page.fill("#triggered-by", "starter")
    await starter.page.click("#run-btn")
    await expect(starter.page.locator("#graph .node[data-state='running']").first).to_be_visible()
    run_id = await shown_run_id(starter.page)
    await expect(starter.page.locator("#cancel-btn")).to_be_visible()
    await expect(starter.page.locator("#run-btn")).to_be_disabled()

    watcher = await visitors.open(
        f"{server.http_url}/", "watcher", color_scheme="light", reduced_motion="reduce"
    )
    page = watcher.page
    await expect(page.locator("#run-id")).to_have_text(run_id)
    await expect(page.locator("#notice")).to_contain_text("already in progress")
    await expect(page.locator("#run-by")).to_have_text("starter")
    await expect(page.locator("#run-btn")).to_be_disabled()
    await expect(page.locator("#cancel-btn")).to_be_hidden()
    await expect(page.locator("#graph .node")).to_have_count(7)
    await expect(page.locator("#graph svg")).to_have_attribute("data-mode", "run")
    # The watcher's untouched slider follows the run it watches.
    await expect(page.locator("#batch-count-out")).to_have_text("3")

    # Animation is off for the visitor who asked for reduced motion, on for the other.
    pulse = "() => getComputedStyle(document.querySelector('#conn .conn-dot')).animationName"
    assert await starter.page.evaluate(pulse) == "beacon"
    assert await page.evaluate(pulse) == "none"
    # The rest needs no motion (the pulse is drawn 60 times a second in software here).
    await starter.page.emulate_media(reduced_motion="reduce")

    # Mid-run: every GENERATE done, ANALYZE running, REPORT waiting.
    running_analyze = "#graph .node[data-task^='ANALYZE'][data-state='running']"
    await expect(starter.page.locator(running_analyze)).to_have_count(3)
    await expect(page.locator(running_analyze)).to_have_count(3)
    await expect(starter.page.locator("#log .line").nth(11)).to_be_attached()
    await starter.screenshot("running-desktop-dark")

    gate.release()
    await expect_finished(starter.page, "succeeded", 3)
    await expect_finished(page, "succeeded", 3)
    assert await task_states(page) == await task_states(starter.page)
    for selector in ("#percent", "#elapsed", "#run-id", "#totals tbody"):
        assert (
            await page.locator(selector).inner_text()
            == await starter.page.locator(selector).inner_text()
        )
    await expect(page.locator("#notice")).to_be_hidden()
    await expect(page.locator(f"#history tbody tr[data-run-id='{run_id}']")).to_have_count(1)
    await expect(starter.page.locator(f"#history tbody tr[data-run-id='{run_id}']")).to_have_count(
        1
    )
    await watcher.screenshot("finished-desktop-light")
    visitors.assert_no_errors()


async def test_starter_cancels_and_every_visitor_sees_it(
    make_settings: SettingsFactory, start_server: Any, visitors: Visitors
) -> None:
    # GENERATE outlasts any wait for the second browser: the cancel ends it anyway.
    settings = make_settings(demo_generate_seconds=120, demo_analyze_seconds=1)
    server = await start_server(settings)
    starter = await visitors.open(f"{server.http_url}/", "starter")
    await choose_batches(starter.page, 2)
    await starter.page.click("#run-btn")
    await expect(starter.page.locator("#run-status")).to_have_attribute("data-status", "running")
    run_id = await shown_run_id(starter.page)

    watcher = await visitors.open(f"{server.http_url}/", "watcher")
    await expect(watcher.page.locator("#run-id")).to_have_text(run_id)
    await expect(watcher.page.locator("#run-status")).to_have_attribute("data-status", "running")
    await expect(watcher.page.locator("#cancel-btn")).to_be_hidden()

    cancel = starter.page.locator("#cancel-btn")
    await expect(cancel).to_be_visible()
    await cancel.click()
    for visitor in (starter, watcher):
        await expect(visitor.page.locator("#run-status")).to_have_attribute(
            "data-status", "cancelled", timeout=RUN_TIMEOUT_MS
        )
        await expect(visitor.page.locator("#graph svg")).to_have_attribute(
            "data-run-status", "cancelled"
        )
        await expect(visitor.page.locator("#graph .node[data-task='REPORT']")).to_have_attribute(
            "data-state", "pending"
        )
        # The tasks the cancel stopped read as cancelled, not failed.
        for name in ("GENERATE (1)", "GENERATE (2)"):
            node = visitor.page.locator(f"#graph .node[data-task='{name}']")
            await expect(node).to_have_attribute("data-state", "cancelled")
        await expect(visitor.page.locator(".legend [data-state='cancelled']")).to_be_visible()
        await expect(visitor.page.locator("#cancel-btn")).to_be_hidden()
        await expect(visitor.page.locator("#run-btn")).to_be_enabled()
        await expect(visitor.page.locator("#report")).to_be_hidden()
        row = visitor.page.locator(f"#history tbody tr[data-run-id='{run_id}']")
        await expect(row).to_have_attribute("data-status", "cancelled")
        await expect(row.locator("a", has_text="report.json")).to_have_count(0)
    await expect(starter.page.locator("#notice")).to_contain_text("cancelled")
    # The token is forgotten once the run is over.
    stored = await starter.page.evaluate("() => sessionStorage.length")
    assert stored == 0
    await starter.screenshot("cancelled-desktop-light")
    visitors.assert_no_errors()


async def test_page_survives_a_server_restart_by_reconnecting(
    make_settings: SettingsFactory, start_server: Any, visitors: Visitors
) -> None:
    settings = make_settings()
    server = await start_server(settings)
    visitor = await visitors.open(f"{server.http_url}/", "reader")
    page = visitor.page
    await choose_batches(page, 2)
    await page.click("#run-btn")
    await expect_finished(page, "succeeded", 2)
    first_run = await shown_run_id(page)

    # While the server is away Chromium itself logs each refused connection attempt.
    visitor.expected_noise = re.compile(
        r"^WebSocket connection to 'ws://[^']+/api/v1/pipeline/stream' failed: "
        r".*ERR_CONNECTION_REFUSED$"
    )
    port = server.port
    await server.stop()
    await expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    await expect(page.locator("#conn-text")).to_contain_text("Reconnecting")
    # What was on screen stays there while the page waits.
    await expect(page.locator("#run-id")).to_have_text(first_run)

    restarted = await start_server(settings, port=port)
    async with httpx.AsyncClient(base_url=restarted.http_url, timeout=30) as client:
        response = await client.post(
            "/api/v1/demo/run", json={"batch_count": 4, "triggered_by": "after restart"}
        )
    assert response.status_code == 202
    second_run = response.json()["run_id"]

    await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=30_000)
    await expect(page.locator("#run-id")).to_have_text(second_run, timeout=RUN_TIMEOUT_MS)
    await expect(page.locator("#run-by")).to_have_text("after restart")
    await expect_finished(page, "succeeded", 4)
    await expect(page.locator(f"#history tbody tr[data-run-id='{second_run}']")).to_have_count(1)
    visitors.assert_no_errors()


async def test_phone_viewport_has_no_horizontal_scroll(
    make_settings: SettingsFactory, start_server: Any, visitors: Visitors
) -> None:
    server = await start_server(make_settings())
    visitor: Visitor = await visitors.open(
        f"{server.http_url}/", "phone", color_scheme="dark", **PHONE
    )
    page = visitor.page
    assert await horizontal_overflow(page) == []

    await choose_batches(page, 12)
    assert await horizontal_overflow(page) == []
    await choose_batches(page, 3)
    await page.fill(
        "#triggered-by", "a-rather-long-name-without-any-spaces-in-it-at-all-0123456789"
    )
    await page.click("#run-btn")
    await expect_finished(page, "succeeded", 3)
    await expect(page.locator("#history tbody tr")).to_have_count(1)
    await page.locator("#batch-details summary").click()
    await expect(page.locator("#batch-table tbody tr")).to_have_count(3)
    assert await horizontal_overflow(page) == []
    await visitor.screenshot("finished-phone-dark")
    visitors.assert_no_errors()
