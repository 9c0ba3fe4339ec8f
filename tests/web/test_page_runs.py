"""The page's second edition in a real Chromium against a real uvicorn: the timeline, a task's
panel, the address of every remembered run (`/runs/<run_id>`) and the replay of a run.

The archive and replay read `GET /api/v1/demo/runs/{id}/events` (NDJSON of recorded frames).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.conftest import GatedWorkflow, SettingsFactory
from tests.web.conftest import Visitors
from tests.web.test_page import choose_batches, expect_finished, shown_run_id, task_states

pytestmark = pytest.mark.browser

# Until GET /runs/{id}/logs is served, the panel of a finished run falls back to the page's own
# lines; the browser itself logs the 404 it got on the way.
LOGS_404 = re.compile(r"status of 404 .*/logs\?")


async def bar_states(page: Page) -> dict[str, str]:
    states: dict[str, str] = await page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#timeline .tl-bar')]
              .map((bar) => [bar.dataset.task, bar.dataset.state]))"""
    )
    return states


async def drawn_bars(page: Page) -> int:
    """Bars whose working segment is drawn with a width."""
    count: int = await page.evaluate(
        """() => [...document.querySelectorAll('#timeline .tl-bar .tl-work')]
              .filter((seg) => !seg.hidden && seg.getBoundingClientRect().width > 0).length"""
    )
    return count


async def log_sources(page: Page, selector: str) -> list[str]:
    sources: list[str] = await page.evaluate(
        f"[...document.querySelectorAll({selector!r})].map((n) => n.dataset.source)"
    )
    return sources


async def finished_view(page: Page) -> dict[str, Any]:
    """What a finished run looks like on the page, for comparing two renderings of it."""
    return {
        "run_id": await page.locator("#run-id").inner_text(),
        "status": await page.locator("#run-status").get_attribute("data-status"),
        "percent": await page.locator("#percent").inner_text(),
        "nodes": await task_states(page),
        "bars": await bar_states(page),
        "log": await page.evaluate(
            "[...document.querySelectorAll('#log .line')].map((n) => "
            "n.dataset.source + '|' + n.querySelector('.msg').textContent)"
        ),
        "totals": await page.locator("#totals tbody").inner_text(),
        "marks": await page.locator("#report .chart-svg .mark").count(),
    }


async def test_twelve_batches_draw_25_bars_and_a_task_opens_with_its_own_lines(
    make_settings: SettingsFactory,
    start_server: Any,
    visitors: Visitors,
    gated_workflow: Callable[[str], GatedWorkflow],
) -> None:
    # REPORT waits for the gate: the run goes on until the live timeline has been seen.
    gate = gated_workflow("report.py")
    server = await start_server(make_settings(workflow_dir=gate.workflow_dir))
    visitor = await visitors.open(f"{server.http_url}/", "timeline")
    visitor.expected_noise = LOGS_404
    page = visitor.page
    await choose_batches(page, 12)
    await expect(page.locator("#timeline")).to_be_hidden()
    await page.click("#run-btn")
    # Live: the timeline shows while the run goes on, with running bars.
    await expect(page.locator("#timeline .tl-bar[data-state='running']").first).to_be_visible()
    gate.release()
    await expect_finished(page, "succeeded", 12)
    await expect(page.locator("#timeline .tl-bar")).to_have_count(25)
    await expect(page.locator("#timeline .tl-bar[data-state='succeeded']")).to_have_count(25)
    assert await drawn_bars(page) == 25
    # Every node of the graph carries its task's duration.
    durations = await page.evaluate(
        "[...document.querySelectorAll('#graph .node-dur')].map((n) => n.textContent)"
    )
    assert len(durations) == 25
    assert all(text.endswith(" s") for text in durations), durations

    # A click on a node opens its panel with its own lines only.
    await page.locator("#graph .node[data-task='GENERATE (3)']").click()
    panel = page.locator("#task-panel")
    await expect(panel).to_be_visible()
    await expect(page.locator("#task-title")).to_have_text("GENERATE (3)")
    await expect(page.locator("#task-title")).to_be_focused()
    await expect(page.locator("#task-state")).to_have_text("succeeded")
    await expect(page.locator("#task-exit")).to_have_text("0")
    await expect(page.locator("#task-started")).not_to_have_text("—")
    own = await log_sources(page, "#task-log .line")
    expected = await log_sources(page, "#log .line[data-source='GENERATE (3)']")
    assert own, "the task's panel shows no lines"
    assert set(own) == {"GENERATE (3)"}
    assert len(own) == len(expected)

    # Enter on a graph node or a timeline bar opens that task; Escape closes the panel again.
    await page.locator("#graph .node[data-task='ANALYZE (12)']").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#task-title")).to_have_text("ANALYZE (12)")
    await page.locator("#timeline .tl-bar[data-task='ANALYZE (7)']").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#task-title")).to_have_text("ANALYZE (7)")
    assert set(await log_sources(page, "#task-log .line")) == {"ANALYZE (7)"}
    await page.keyboard.press("Escape")
    await expect(panel).to_be_hidden()
    await expect(page.locator("#timeline .tl-bar[data-task='ANALYZE (7)']")).to_be_focused()

    # A task's name in the log opens it too.
    await page.locator("#log .line[data-source='REPORT'] .src").first.click()
    await expect(page.locator("#task-title")).to_have_text("REPORT")
    await visitor.screenshot("timeline-task-panel")
    visitors.assert_no_errors()


@pytest.mark.slow(5)
async def test_a_finished_run_has_an_address_that_renders_it_in_full_after_a_reload(
    make_settings: SettingsFactory, start_server: Any, visitors: Visitors
) -> None:
    server = await start_server(make_settings())
    starter = await visitors.open(f"{server.http_url}/", "starter")
    await choose_batches(starter.page, 3)
    await starter.page.click("#run-btn")
    await expect_finished(starter.page, "succeeded", 3)
    run_id = await shown_run_id(starter.page)
    live = await finished_view(starter.page)
    # The history links the run's address.
    row = starter.page.locator(f"#history tbody tr[data-run-id='{run_id}']")
    await expect(row.locator(f"a[href='/runs/{run_id}']")).to_have_count(1)

    # A second run replaces the live page's run; the address still opens the first one.
    await choose_batches(starter.page, 1)
    await starter.page.click("#run-btn")
    await expect(starter.page.locator("#run-id")).not_to_have_text(run_id)
    await expect_finished(starter.page, "succeeded", 1)

    visitor = await visitors.open(f"{server.http_url}/runs/{run_id}", "later")
    visitor.expected_noise = LOGS_404
    page = visitor.page
    await page.reload()
    await page.wait_for_selector("#conn[data-state='live']")
    await expect(page.locator("#run-id")).to_have_text(run_id)
    await expect_finished(page, "succeeded", 3)
    await expect(page.locator("#timeline .tl-bar[data-state='succeeded']")).to_have_count(7)
    assert await drawn_bars(page) == 7
    await expect(page.locator("#log .line").first).to_be_attached()
    archived = await finished_view(page)
    assert archived == live
    # Its tasks open with their lines from the archive (or the page's own when it has none).
    await page.locator("#timeline .tl-bar[data-task='ANALYZE (2)']").click()
    await expect(page.locator("#task-log .line").first).to_be_attached()
    assert set(await log_sources(page, "#task-log .line")) == {"ANALYZE (2)"}
    await visitor.screenshot("run-address")
    await expect(page.locator("#run-label")).to_have_text("From the archive")
    await expect(page.locator("#live-link")).to_be_visible()

    # Starting a run from a run's address goes back to the live page, which follows the new run.
    await choose_batches(page, 1)
    await page.click("#run-btn")
    await expect(page.locator("#run-id")).not_to_have_text(run_id)
    await expect_finished(page, "succeeded", 1)
    assert page.url == f"{server.http_url}/"
    new_id = await shown_run_id(page)
    await expect(page.locator("#run-link")).to_have_attribute("href", f"/runs/{new_id}")

    async with httpx.AsyncClient(base_url=server.http_url) as client:
        assert (await client.get("/runs/not-a-run")).status_code == 404
        assert (await client.get(f"/runs/{run_id}")).status_code == 200
    unknown = await visitors.open(f"{server.http_url}/runs/r00000000000", "unknown")
    await expect(unknown.page.locator("#archive-note")).to_contain_text("not remembered")
    # 404 of the run's detail is logged by the browser itself; the page handles it.
    unknown.errors = [e for e in unknown.errors if "404" not in e]
    visitors.assert_no_errors()


async def test_the_live_run_address_follows_it_and_keeps_it_after_it_ends(
    make_settings: SettingsFactory,
    start_server: Any,
    visitors: Visitors,
    gated_workflow: Callable[[str], GatedWorkflow],
) -> None:
    # ANALYZE waits for the gate: the watcher opens the address of a run still going on.
    gate = gated_workflow("analyze.py")
    server = await start_server(make_settings(workflow_dir=gate.workflow_dir))
    starter = await visitors.open(f"{server.http_url}/", "starter")
    await choose_batches(starter.page, 2)
    await starter.page.click("#run-btn")
    run_id = await shown_run_id(starter.page)
    watcher = await visitors.open(f"{server.http_url}/runs/{run_id}", "watcher")
    await expect(watcher.page.locator("#run-id")).to_have_text(run_id)
    await expect(watcher.page.locator("#run-status")).to_have_attribute("data-status", "running")
    await expect(watcher.page.locator("#timeline .tl-bar[data-state='running']")).to_have_count(2)
    gate.release()
    await expect(watcher.page.locator("#timeline .tl-bar")).to_have_count(5)
    await expect_finished(watcher.page, "succeeded", 2)
    await expect_finished(starter.page, "succeeded", 2)
    assert await finished_view(watcher.page) == await finished_view(starter.page)
    visitors.assert_no_errors()


async def test_a_replay_at_16x_ends_in_the_state_the_live_run_ended_in(
    make_settings: SettingsFactory, start_server: Any, visitors: Visitors
) -> None:
    server = await start_server(make_settings(demo_generate_seconds=1.0, demo_analyze_seconds=1.0))
    visitor = await visitors.open(f"{server.http_url}/", "replay")
    page = visitor.page
    await choose_batches(page, 4)
    await page.click("#run-btn")
    await expect_finished(page, "succeeded", 4)
    live = await finished_view(page)

    await page.click("#replay-btn")
    await expect(page.locator("#replay-bar")).to_be_visible()
    await page.click("#replay-bar .speed[data-speed='16']")
    await expect(page.locator("#replay-bar .speed[data-speed='16']")).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(page.locator("#run-label")).to_contain_text("Replay of run")
    await expect(page.locator("#replay-play")).to_have_text("Replay again", timeout=30_000)
    assert await finished_view(page) == live

    # The scrubber goes back to the start: nothing has finished there.
    await page.locator("#replay-scrub").fill("0")
    await expect(page.locator("#graph .node[data-state='succeeded']")).to_have_count(0)
    await expect(page.locator("#report")).to_be_hidden()
    assert await page.locator("#log .line").count() < len(live["log"])
    # Played again it ends where the live run did; pause and the speeds work on the way.
    await page.click("#replay-bar .speed[data-speed='1']")
    await expect(page.locator("#replay-bar .speed[data-speed='1']")).to_have_attribute(
        "aria-pressed", "true"
    )
    await page.click("#replay-play")
    await expect(page.locator("#replay-play")).to_have_text("Pause")
    await page.click("#replay-play")
    await expect(page.locator("#replay-play")).to_have_text("Play")
    paused_at = await page.locator("#replay-scrub").input_value()
    await page.click("#replay-bar .speed[data-speed='16']")
    assert await page.locator("#replay-scrub").input_value() == paused_at
    await page.click("#replay-play")
    await expect(page.locator("#replay-play")).to_have_text("Replay again", timeout=30_000)
    assert await finished_view(page) == live

    await page.click("#replay-exit")
    await expect(page.locator("#replay-bar")).to_be_hidden()
    await expect(page.locator("#run-id")).to_have_text(live["run_id"])
    await expect(page.locator("#run-label")).to_have_text("Last run")
    visitors.assert_no_errors()
