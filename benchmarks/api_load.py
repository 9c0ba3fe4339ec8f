"""Figure 4: request rate and p99 of the demo API at concurrency 50, against /health.

The service as shipped, with a long-paced run in progress so that `POST /demo/run` attaches
(200, `attached: true`) instead of starting runs. Each endpoint is loaded for a fixed time by
50 concurrent keep-alive clients (aiohttp, in this process); rounds alternate the endpoints so
machine noise spreads over all three. `/health` does no work of its own: it is the floor the
framework (uvicorn, Starlette, FastAPI, middleware) sets on this machine.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import procs
from benchmarks.stats import median, percentile, ratio

CONCURRENCY = 50
ENDPOINTS = {
    "health": ("GET", "/health", None, 200),
    "status": ("GET", "/api/v1/demo/status", None, 200),
    "attach": ("POST", "/api/v1/demo/run", {"batch_count": 2}, 200),
}


async def load(
    session: aiohttp.ClientSession, base: str, endpoint: str, seconds: float
) -> dict[str, Any]:
    method, path, body, expected = ENDPOINTS[endpoint]
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.monotonic() < stop:
            started = time.monotonic()
            async with session.request(method, base + path, json=body) as response:
                await response.read()
                if response.status != expected:
                    errors += 1
            latencies.append(time.monotonic() - started)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.monotonic() - started
    return {
        "requests": len(latencies),
        "errors": errors,
        "per_second": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


async def figure_api(sizes: Any) -> dict[str, Any]:
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in ENDPOINTS}
    with tempfile.TemporaryDirectory(prefix="bench-api-") as workspace:
        async with procs.service(Path(workspace), DEMO_GENERATE_SECONDS="300") as running:
            connector = aiohttp.TCPConnector(limit=CONCURRENCY)
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                first = await session.post(
                    running.http_url + "/api/v1/demo/run", json={"batch_count": 2}
                )
                if first.status != 202:
                    raise RuntimeError(f"could not start the long run: {first.status}")
                await load(session, running.http_url, "health", sizes.api_warmup_seconds)
                for _ in range(sizes.repeats):
                    for name in ENDPOINTS:
                        rounds[name].append(
                            await load(session, running.http_url, name, sizes.api_seconds)
                        )
    result: dict[str, Any] = {"concurrency": CONCURRENCY}
    for name, runs in rounds.items():
        result[f"{name}_per_second"] = median([r["per_second"] for r in runs])
        result[f"{name}_p99_ms"] = median([r["p99_ms"] for r in runs])
        result[f"{name}_errors"] = sum(r["errors"] for r in runs)
    for name in ("status", "attach"):
        result[f"{name}_rate_ratio"] = ratio(
            result[f"{name}_per_second"], result["health_per_second"]
        )
        result[f"{name}_p99_ratio"] = ratio(result[f"{name}_p99_ms"], result["health_p99_ms"])
    result["rounds"] = rounds
    return result
