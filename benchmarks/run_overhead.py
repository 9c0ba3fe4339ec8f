"""Figure 3: what orchestration adds to the work of a run.

Ours: POST /api/v1/demo/run (12 batches, zero pacing) on the service as shipped (local
executor, in-memory state), timed until the run's `complete` frame arrives on the stream.
Floor: the same `workflows/bin` scripts run directly as subprocesses, in the same dependency
order and with the same concurrency (every GENERATE (i) at once, ANALYZE (i) as soon as its
GENERATE is done, REPORT after all), output read through pipes as the executor reads it.
Runs alternate between the two after one warm-up each, so drifting machine load hits both.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from benchmarks import procs
from benchmarks.stats import median

BIN = procs.REPO / "workflows" / "bin"
ROWS = 100  # DEMO_ROWS_PER_BATCH's default
RUN_TIMEOUT = 120.0
SETTLE_SECONDS = 0.5


async def _script(cwd: Path, name: str, *args: str) -> None:
    await asyncio.to_thread(cwd.mkdir, parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BIN / name),
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed: {err.decode(errors='replace')[-500:]}")


async def direct_run(work: Path, run_id: str, batches: int) -> float:
    """The work alone: the scripts in dependency order; wall seconds."""

    async def batch(index: int) -> Path:
        generate, analyze = work / f"generate_{index}", work / f"analyze_{index}"
        csv = generate / f"batch_{index}.csv"
        await _script(
            generate, "generate.py", "--run-id", run_id, "--batch", str(index),
            "--rows", str(ROWS), "--seconds", "0", "--out", csv.name,
        )  # fmt: skip
        stats = analyze / f"stats_{index}.json"
        await _script(
            analyze, "analyze.py", "--batch", str(index), "--input", str(csv),
            "--seconds", "0", "--out", stats.name,
        )  # fmt: skip
        return stats

    started = time.monotonic()
    stats = await asyncio.gather(*(batch(i) for i in range(1, batches + 1)))
    await _script(
        work / "report", "report.py", "--run-id", run_id, "--out", "report.json",
        *(str(s) for s in stats),
    )  # fmt: skip
    return time.monotonic() - started


async def service_run(running: procs.Service, http: httpx.AsyncClient, batches: int) -> float:
    """POST → `complete` on the stream; wall seconds."""
    async with connect(running.ws_url) as stream:
        await stream.recv()  # snapshot
        started = time.monotonic()
        response = await http.post("/api/v1/demo/run", json={"batch_count": batches})
        if response.status_code != 202:
            raise RuntimeError(f"run not started: {response.status_code} {response.text}")
        run_id = response.json()["run_id"]
        async with asyncio.timeout(RUN_TIMEOUT):
            while True:
                frame = json.loads(await stream.recv())
                if frame["type"] == "complete" and frame["run_id"] == run_id:
                    elapsed = time.monotonic() - started
                    if frame["data"]["status"] != "succeeded":
                        raise RuntimeError(f"run {run_id} ended {frame['data']['status']}")
                    return elapsed


async def figure_run_overhead(sizes: Any) -> dict[str, Any]:
    batches = sizes.batches
    ours: list[float] = []
    direct: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        root = Path(tmp)
        async with (
            procs.service(root / "service") as running,
            httpx.AsyncClient(base_url=running.http_url, timeout=30) as http,
        ):
            for attempt in range(sizes.run_repeats + 1):
                # Alternate which goes first, and let the service finish its bookkeeping of
                # a run (history, stream frames) before the floor runs, so neither competes
                # with the other for the cores.
                direct_dir = root / f"direct-{attempt}"
                if attempt % 2:
                    took_direct = await direct_run(direct_dir, "rbenchmark01", batches)
                    await asyncio.sleep(SETTLE_SECONDS)
                    took_ours = await service_run(running, http, batches)
                else:
                    took_ours = await service_run(running, http, batches)
                    await asyncio.sleep(SETTLE_SECONDS)
                    took_direct = await direct_run(direct_dir, "rbenchmark01", batches)
                await asyncio.sleep(SETTLE_SECONDS)
                if attempt:  # the first pair warms caches and imports
                    ours.append(took_ours)
                    direct.append(took_direct)
    ours_median, direct_median = median(ours), median(direct)
    return {
        "paired_overhead_seconds": median([a - b for a, b in zip(ours, direct, strict=True)]),
        "batches": batches,
        "repeats": len(ours),
        "ours_seconds": ours_median,
        "direct_seconds": direct_median,
        "overhead_seconds": ours_median - direct_median,
        "ours_all": ours,
        "direct_all": direct,
    }
