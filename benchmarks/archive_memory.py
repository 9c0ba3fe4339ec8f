"""Figure 8: memory stays flat over many runs, in the service and in Redis.

The service as shipped, with its state in a private `redis-server` (no persistence), runs
`RUNS` runs one after the other; each is followed to its `complete` over HTTP
(`/demo/runs/{id}/events?follow=true`, NDJSON) and then replayed whole (`/events`). After each
run: the service's RSS and Redis' `used_memory`. Once the history is full
(`RUN_HISTORY_LIMIT` runs) every new run pushes the oldest out with its event log, so both
should stop growing: the figure is the growth from then to the last run. Floor: the values at
that point (absolute, on this machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis.asyncio

from benchmarks import procs
from benchmarks.sizes import SMOKE, Sizes
from benchmarks.stats import median

HISTORY_LIMIT = 5
RUNS = {"full": 50, "smoke": 3}
BATCHES = {"full": 3, "smoke": 1}
RUN_TIMEOUT = 120.0
START_TIMEOUT = 10.0
MB = 1024 * 1024


@contextlib.contextmanager
def _redis_server(directory: Path) -> Any:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = procs.free_port()
    args = [binary, "--port", str(port), "--bind", procs.HOST, "--save", ""]
    args += ["--appendonly", "no", "--dir", str(directory)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"redis://{procs.HOST}:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _ready(client: redis.asyncio.Redis) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if await client.ping():
                return
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start")
        await asyncio.sleep(0.05)  # polling a port: there is no event to await


async def _one_run(http: httpx.AsyncClient, batches: int) -> tuple[int, int]:
    """Start a run, follow it to `complete`, replay it; (frames followed, bytes replayed)."""
    started = await http.post("/api/v1/demo/run", json={"batch_count": batches})
    started.raise_for_status()
    run_id = started.json()["run_id"]
    frames = 0
    url = f"/api/v1/demo/runs/{run_id}/events"
    async with http.stream("GET", url, params={"follow": "true"}) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            frames += bool(line)
    replay = await http.get(url)
    replay.raise_for_status()
    if not replay.text.rstrip().endswith("}") or '"complete"' not in replay.text:
        raise RuntimeError(f"run {run_id}: the replay has no complete")
    return frames, len(replay.content)


async def figure_archive_memory(sizes: Sizes) -> dict[str, Any]:
    mode = "smoke" if sizes is SMOKE else "full"
    runs, batches = RUNS[mode], BATCHES[mode]
    warm = min(HISTORY_LIMIT, runs - 1)
    rss_mb: list[float] = []
    redis_mb: list[float] = []
    frames: list[int] = []
    replay_kb: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, _redis_server(Path(tmp)) as url:
        client = redis.asyncio.Redis.from_url(url)
        try:
            await _ready(client)
            env = {"REDIS_URL": url, "RUN_HISTORY_LIMIT": str(HISTORY_LIMIT)}
            async with procs.service(Path(tmp) / "workspace", **env) as service:
                process = psutil.Process(service.pid)
                async with httpx.AsyncClient(
                    base_url=service.http_url, timeout=RUN_TIMEOUT
                ) as http:
                    for _ in range(runs):
                        followed, replayed = await _one_run(http, batches)
                        frames.append(followed)
                        replay_kb.append(replayed / 1024)
                        rss_mb.append(process.memory_info().rss / MB)
                        info = await client.info("memory")
                        redis_mb.append(int(info["used_memory"]) / MB)
        finally:
            await client.aclose()
    return {
        "runs": runs,
        "batches": batches,
        "history_limit": HISTORY_LIMIT,
        "frames_per_run": median([float(f) for f in frames]),
        "replay_kb_per_run": median(replay_kb),
        "rss_mb": [round(value, 2) for value in rss_mb],
        "redis_mb": [round(value, 3) for value in redis_mb],
        "rss_at_full_history_mb": rss_mb[warm],
        "redis_at_full_history_mb": redis_mb[warm],
        "rss_growth_mb": rss_mb[-1] - rss_mb[warm],
        "redis_growth_mb": redis_mb[-1] - redis_mb[warm],
    }
