"""What a visitor hits in the first minute, in a real Chromium against a real uvicorn: the run
brought into view, the report a click away, an outage that does not look live, a log flood, an
idle page that does not animate, the controls locked to the active run and the last run labelled.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.async_api import expect

from nextflow_k8s_service.utils.broadcaster import Frame
from tests.conftest import GatedWorkflow, SettingsFactory
from tests.web.conftest import Visitors
from tests.web.test_page import PHONE, RUN_TIMEOUT_MS, choose_batches, shown_run_id

pytestmark = pytest.mark.browser

# Endless CSS animations (pulses, stripes, blinking) of the page or of its run card.
RUNNING_ANIMATIONS = (
    "(selector) => document.querySelector(selector || 'body').getAnimations({subtree: true})"
    ".filter((a) => a.playState === 'running' && a.effect.getTiming().iterations === Infinity)"
    ".map((a) => a.animationName)"
)


async def test_phone_run_start_brings_the_pipeline_into_view_and_the_report_is_a_click_away(
    make_settings: SettingsFactory,
    start_server: Any,
    visitors: Visitors,
    gated_workflow: Callable[[str], GatedWorkflow],
) -> None:
    # ANALYZE waits for the gate: the run is in progress while the page is looked at.
    gate = gated_workflow("analyze.py")
    server = await start_server(make_settings(workflow_dir=gate.workflow_dir))
    visitor = await visitors.open(f"{server.http_url}/", "phone", **PHONE)
    page = visitor.page
    await choose_batches(page, 2)
    top = await page.locator("#pipeline").evaluate("(node) => node.getBoundingClientRect().top")
    assert top > 200, "the pipeline starts far down the page"

    # Enter on the Run button: focus and view move to the run instead of dropping to <body>.
    await page.focus("#run-btn")
    await page.keyboard.press("Enter")
    await expect(page.locator("#pipeline-title")).to_be_focused()
    await expect(page.locator("#run-label")).to_have_text("Run in progress")
    await expect(page.locator("#pipeline-title")).to_be_in_viewport()
    await expect(page.locator("#graph svg")).to_be_in_viewport()
    await expect(page.locator("#batch-count")).to_be_disabled()

    gate.release()
    await expect(page.locator("#run-status")).to_have_attribute(
        "data-status", "succeeded", timeout=RUN_TIMEOUT_MS
    )
    await expect(page.locator("#run-label")).to_have_text("Last run")
    cue = page.locator("#report-cue")
    await expect(cue).to_be_visible()
    await cue.click()
    await expect(page.locator("#report-title")).to_be_focused()
    await expect(page.locator("#report-title")).to_be_in_viewport()
    await expect(page.locator("#report-chart svg")).to_be_in_viewport()
    await expect(page.locator("#batch-count")).to_be_enabled()
    visitors.assert_no_errors()


async def test_an_outage_shows_a_paused_run_then_the_truth_from_the_snapshot(
    make_settings: SettingsFactory, start_server: Any, visitors: Visitors
) -> None:
    settings = make_settings(demo_generate_seconds=60)
    server = await start_server(settings)
    visitor = await visitors.open(f"{server.http_url}/", "starter")
    page = visitor.page
    await choose_batches(page, 2)
    await page.click("#run-btn")
    await expect(page.locator("#graph .node[data-state='running']").first).to_be_visible()
    run_id = await shown_run_id(page)
    await expect(page.locator("#cancel-btn")).to_be_visible()
    await expect(page.locator("#elapsed")).not_to_have_text("0:00")

    visitor.expected_noise = re.compile(
        r"^WebSocket connection to 'ws://[^']+/api/v1/pipeline/stream' failed: "
        r".*ERR_CONNECTION_REFUSED$"
    )
    port = server.port
    await server.stop()
    status = page.locator("#run-status")
    await expect(status).to_have_attribute("data-status", "paused")
    await expect(status).to_have_text("disconnected")
    await expect(page.locator("#cancel-btn")).to_be_hidden()
    await expect(page.locator("#run-message")).to_contain_text("Connection to the service lost")
    await expect(page.locator("#graph svg")).to_have_attribute("data-run-status", "paused")
    assert await page.evaluate("() => document.body.dataset.busy") == "no"
    # Nothing moves and the clock stands still while the page waits: the retry countdown
    # (redrawn every second) changes, the elapsed time does not.
    elapsed = await page.locator("#elapsed").inner_text()
    countdown = page.locator("#conn-text")
    await expect(countdown).to_have_text(re.compile(r"^Reconnecting in \d+ s$"))
    first = await countdown.inner_text()
    await expect(countdown).not_to_have_text(first)
    assert await page.locator("#elapsed").inner_text() == elapsed
    assert await page.evaluate(RUNNING_ANIMATIONS, "#pipeline") == []

    # The service comes back without the run (in-memory state): the page says so.
    await start_server(settings, port=port)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=30_000)
    await expect(page.locator("#run-id")).to_have_text(run_id)
    await expect(status).to_have_attribute("data-status", "unknown")
    await expect(page.locator("#run-message")).to_contain_text("no longer knows this run")
    await expect(page.locator("#run-btn")).to_be_enabled()
    await expect(page.locator("#cancel-btn")).to_be_hidden()
    assert await page.evaluate(RUNNING_ANIMATIONS, "#pipeline") == []
    visitors.assert_no_errors()


async def test_a_flood_of_log_lines_keeps_following_at_the_cap(
    make_settings: SettingsFactory, start_server: Any, visitors: Visitors
) -> None:
    server = await start_server(make_settings(demo_generate_seconds=60))
    visitor = await visitors.open(f"{server.http_url}/", "reader")
    page = visitor.page
    await choose_batches(page, 2)
    await page.click("#run-btn")
    run_id = await shown_run_id(page)
    # The flood joins the run's own lines on the real stream.
    broadcaster = server.app.state.services.broadcaster
    frames, per_frame = 60, 50  # 3,000 lines at 1,000 lines/s
    for i in range(frames):
        lines = [
            {
                "timestamp": datetime.now(UTC).isoformat(),
                "source": f"GENERATE ({n % 12 + 1})",
                "message": f"line {i * per_frame + n}: " + "x" * 60,
            }
            for n in range(per_frame)
        ]
        frame = Frame.build("log", run_id, datetime.now(UTC), {"lines": lines})
        broadcaster.publish(frame)
        await asyncio.sleep(per_frame / 1000)  # the pace of the flood, not a wait for an event

    last = f"line {frames * per_frame - 1}: "
    await expect(page.locator("#log .line").last).to_contain_text(last)
    await expect(page.locator("#log .line")).to_have_count(500)
    await expect(page.locator("#log-jump")).to_be_hidden()
    at_end = await page.evaluate(
        "() => { const l = document.querySelector('#log');"
        " return l.scrollTop + l.clientHeight >= l.scrollHeight - 2; }"
    )
    assert at_end, "auto-follow stays on at the 500-line cap"

    # Scrolling up pauses the follow; new lines then count instead of moving the view.
    await page.locator("#log").evaluate("(l) => { l.scrollTop = 0; }")
    await expect(page.locator("#log-jump")).to_be_visible()
    one = {"timestamp": datetime.now(UTC).isoformat(), "source": "x", "message": "m"}
    broadcaster.publish(Frame.build("log", run_id, datetime.now(UTC), {"lines": [one]}))
    await expect(page.locator("#log-jump")).to_have_text("Jump to latest (1 new)")
    assert await page.locator("#log").evaluate("(l) => l.scrollTop") == 0
    visitors.assert_no_errors()


async def test_an_idle_page_does_not_animate_and_labels_the_last_run(
    make_settings: SettingsFactory, start_server: Any, visitors: Visitors
) -> None:
    server = await start_server(make_settings())
    first = await visitors.open(f"{server.http_url}/", "first", reduced_motion="no-preference")
    await expect(first.page.locator("#run-label")).to_contain_text("Plan for the next run")
    assert await first.page.evaluate(RUNNING_ANIMATIONS) == []
    await choose_batches(first.page, 4)
    # The run itself is watched without motion (headless Chromium draws it in software);
    # once it is over, the page at rest must not animate again.
    await first.page.emulate_media(reduced_motion="reduce")
    await first.page.click("#run-btn")
    await expect(first.page.locator("#run-status")).to_have_attribute(
        "data-status", "succeeded", timeout=RUN_TIMEOUT_MS
    )
    await first.page.emulate_media(reduced_motion="no-preference")
    assert await first.page.evaluate(RUNNING_ANIMATIONS) == []

    # A returning visitor sees the last run, labelled as such, beside the plan of the controls.
    later = await visitors.open(f"{server.http_url}/", "later", reduced_motion="no-preference")
    page = later.page
    await expect(page.locator("#run-label")).to_have_text("Last run")
    await expect(page.locator("#graph .node")).to_have_count(9)
    await expect(page.locator("#batch-count-out")).to_have_text("5")
    await expect(page.locator("#report-cue")).to_be_visible()
    assert await page.evaluate(RUNNING_ANIMATIONS) == []
    # Moving the slider shows the plan instead of the last run.
    await choose_batches(page, 2)
    await expect(page.locator("#graph svg")).to_have_attribute("data-mode", "preview")
    await expect(page.locator("#run-label")).to_contain_text("Plan for the next run: 2 batches")
    visitors.assert_no_errors()


async def test_the_rate_limit_notice_says_when_to_retry(
    make_settings: SettingsFactory, start_server: Any, visitors: Visitors
) -> None:
    server = await start_server(make_settings(rate_limit_runs_per_minute=1))
    visitor = await visitors.open(f"{server.http_url}/", "eager")
    page = visitor.page
    # The browser logs the refused request itself; the page shows its own notice.
    visitor.expected_noise = re.compile(r"status of 429 \(Too Many Requests\)")
    await choose_batches(page, 1)
    await page.click("#run-btn")
    await expect(page.locator("#run-status")).to_have_attribute(
        "data-status", "succeeded", timeout=RUN_TIMEOUT_MS
    )
    await page.click("#run-btn")
    error = page.locator("#error")
    await expect(error).to_be_visible()
    await expect(error).to_have_text(re.compile(r"Try again in \d+ seconds?\.$"))
    await expect(error).not_to_contain_text("RATE_LIMIT")
    await expect(page.locator("#run-btn")).to_be_enabled()
    await expect(page.locator("#run-btn")).to_be_focused()
    visitors.assert_no_errors()


async def test_progress_moves_while_tasks_run_and_never_goes_backwards(
    make_settings: SettingsFactory, start_server: Any, visitors: Visitors
) -> None:
    settings = make_settings(demo_generate_seconds=4.0, demo_analyze_seconds=4.0)
    server = await start_server(settings)
    visitor = await visitors.open(f"{server.http_url}/", "starter")
    page = visitor.page
    await page.evaluate(
        """() => {
            const bar = document.querySelector('#overall-bar');
            window.progressSeen = [];
            new MutationObserver(() => window.progressSeen.push(Number(bar.ariaValueNow)))
              .observe(bar, { attributes: true, attributeFilter: ['aria-valuenow'] });
        }"""
    )
    await choose_batches(page, 2)
    await page.click("#run-btn")
    # Before any task has finished, the bar already moves with the running ones.
    await expect(page.locator("#graph .node[data-state='running']").first).to_be_visible()
    await expect(page.locator("#percent")).not_to_have_text("0%")
    assert await page.locator("#graph .node[data-state='succeeded']").count() == 0
    await page.click("#cancel-btn")
    await expect(page.locator("#run-status")).to_have_attribute(
        "data-status", "cancelled", timeout=RUN_TIMEOUT_MS
    )
    seen: list[float] = await page.evaluate("() => window.progressSeen")
    assert seen, "the bar never moved"
    assert seen == sorted(seen), f"the bar went backwards: {seen}"
    assert seen[-1] > 0
    await expect(page.locator("#percent")).to_have_text(f"{int(seen[-1])}%")
    visitors.assert_no_errors()


async def test_pods_and_quota_are_words_of_the_kubernetes_executor_only(
    make_settings: SettingsFactory, start_server: Any, visitors: Visitors
) -> None:
    server = await start_server(make_settings())
    visitor = await visitors.open(f"{server.http_url}/", "reader")
    page = visitor.page
    await choose_batches(page, 3)
    await expect(page.locator("#preview-summary")).to_contain_text("at most 3 tasks at once")
    await expect(page.locator("#pv-quota")).to_be_hidden()
    # The same plan, drawn as the Kubernetes executor would: the page's own render.
    await page.evaluate(
        """async () => {
            const { renderPreview } = await import('/static/preview.js');
            const plan = await (await fetch('/api/v1/demo/preview?batch_count=3')).json();
            const ids = {
              pvSummary: 'preview-summary', pvTasks: 'pv-tasks', pvPods: 'pv-pods',
              pvPodsLabel: 'pv-pods-label', pvPeak: 'pv-peak', pvPeakLabel: 'pv-peak-label',
              pvTime: 'pv-time', pvQuota: 'pv-quota', pvCpuText: 'pv-cpu-text',
              pvCpuBar: 'pv-cpu-bar', pvMemText: 'pv-mem-text', pvMemBar: 'pv-mem-bar',
              pvFit: 'pv-fit',
            };
            const ui = Object.fromEntries(
              Object.entries(ids).map(([key, id]) => [key, document.getElementById(id)]));
            renderPreview(ui, plan, 'kubernetes');
        }"""
    )
    await expect(page.locator("#pv-pods-label")).to_have_text("Worker pods")
    await expect(page.locator("#preview-summary")).to_contain_text("at most 3 worker pods at once")
    await expect(page.locator("#pv-quota")).to_be_visible()
    await expect(page.locator("#pv-cpu-text")).to_have_text("5 / 14 CPU")
    await expect(page.locator("#pv-fit")).to_have_attribute("data-fits", "yes")
    visitors.assert_no_errors()
