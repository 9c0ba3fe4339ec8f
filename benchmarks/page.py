"""Figure 7: the demo page in Debian's Chromium, at rest and under a flood of log lines.

The page is served by `benchmarks.serve ours` (create_app under uvicorn, in its own process),
whose publish command injects log frames of 50 lines through `Broadcaster.publish`. At rest the
figure reads Chromium's main-thread task time (CDP `Performance.getMetrics`, `TaskDuration`)
over a few seconds; under the flood (20 frames/s = 1,000 lines/s) it records every long task
(> 50 ms) the page reports through `PerformanceObserver`.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from playwright.async_api import Page, async_playwright, expect

from benchmarks import procs
from benchmarks.frames import LINES_PER_FRAME, POOL_SIZE, line_pool

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]
FLOOD_LINES_PER_SECOND = 1000
LOG_CAP = 500

WATCH_LONG_TASKS = """() => {
  window.benchLongTasks = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.benchLongTasks.push(entry.duration);
  }).observe({ type: "longtask" });
}"""


async def _task_seconds(cdp: Any) -> float:
    metrics = (await cdp.send("Performance.getMetrics"))["metrics"]
    return float(next(m["value"] for m in metrics if m["name"] == "TaskDuration"))


async def _idle(page: Page, seconds: float) -> float:
    """Main-thread task time of the page at rest, in ms per second."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Performance.enable")
    before = await _task_seconds(cdp)
    await asyncio.sleep(seconds)  # the measurement window itself
    after = await _task_seconds(cdp)
    return (after - before) * 1000 / seconds


async def figure_page(sizes: Any) -> dict[str, Any]:
    """Figure 7: main-thread work of an idle page; long tasks under 1,000 log lines/s."""
    frames = max(1, round(sizes.page_flood_seconds * FLOOD_LINES_PER_SECOND / LINES_PER_FRAME))
    with tempfile.TemporaryDirectory(prefix="bench-page-") as workspace:
        async with (
            procs.fanout_server("ours", Path(workspace)) as server,
            async_playwright() as playwright,
        ):
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                await page.goto(f"http://{procs.HOST}:{server.port}/")
                await page.wait_for_selector("#conn[data-state='live']")
                await expect(page.locator("#pv-tasks")).to_have_text(re.compile(r"\d"))
                idle_ms = await _idle(page, sizes.page_idle_seconds)
                await page.evaluate(WATCH_LONG_TASKS)
                published = await server.publish(
                    count=frames,
                    rate=FLOOD_LINES_PER_SECOND / LINES_PER_FRAME,
                    payload="text",
                )
                # The page shows the last line published (the pool's messages are fixed).
                last = line_pool("text")[(frames - 1) % POOL_SIZE][-1]["message"]
                rows = page.locator("#log .line")
                await expect(rows.last.locator(".msg")).to_have_text(last, timeout=60_000)
                await expect(rows).to_have_count(min(LOG_CAP, frames * LINES_PER_FRAME))
                long_tasks: list[float] = await page.evaluate("window.benchLongTasks")
                following: bool = await page.evaluate(
                    "(() => { const l = document.querySelector('#log');"
                    " return l.scrollTop + l.clientHeight >= l.scrollHeight - 2; })()"
                )
            finally:
                await browser.close()
    return {
        "idle_seconds": sizes.page_idle_seconds,
        "idle_task_ms_per_second": idle_ms,
        "flood_frames": frames,
        "flood_lines_per_second": published["offered_rate"] * LINES_PER_FRAME,
        "flood_long_tasks": len(long_tasks),
        "flood_max_long_task_ms": max(long_tasks, default=0.0),
        "flood_still_following": following,
    }
