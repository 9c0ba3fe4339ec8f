"""Figures 7, 8 and 9: uvicorn's WebSocket implementations, a crowd of clients, run start.

Figure 7 publishes flat out through each implementation uvicorn offers (`websockets`,
`websockets-sansio`, `wsproto`), alternating, and compares the server's CPU per delivered
frame: the service pins the cheapest (`server.py`). Figure 8 connects 100, 300 and 1,000
clients with the service's *default* limits (client cap, per-address connect rate: all the
clients come from one address, like a crowd behind one NAT) and publishes at the demo's frame
rate: server CPU, delivery p99, RSS per client, clients refused. Figure 9 times
`POST /demo/run` → 202 for 1, 6 and 12 batches while a probe in the server measures how late
the event loop wakes up, from the POST until every GENERATE task of the run is running.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import procs
from benchmarks.fanout import _cpu_per_delivery, _throughput, fanout_run
from benchmarks.stats import median

WS_IMPLS = ("websockets", "websockets-sansio", "wsproto")
START_PACE_SECONDS = 60.0  # GENERATE's pacing in figure 9: tasks stay running while measured
RUNNING_TIMEOUT = 60.0
IDLE_PROBE_SECONDS = 0.5  # the probe alone before each start: the machine's own lateness


def _key(impl: str) -> str:
    return impl.replace("-", "_")


async def figure_ws_impls(sizes: Any) -> dict[str, Any]:
    """Figure 7: CPU per delivered frame and throughput of each implementation."""
    runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in WS_IMPLS}
    for _ in range(sizes.repeats):
        for impl in WS_IMPLS:
            runs[impl].append(
                await fanout_run(
                    "ours",
                    clients=sizes.clients,
                    count=sizes.saturation_frames,
                    rate=None,
                    payload="text",
                    server_args=("--ws", impl),
                )
            )
    result: dict[str, Any] = {"clients": sizes.clients}
    for impl, impl_runs in runs.items():
        result[f"{_key(impl)}_cpu_us_per_delivery"] = median(
            [_cpu_per_delivery(r) for r in impl_runs]
        )
        result[f"{_key(impl)}_delivered_per_second"] = median([_throughput(r) for r in impl_runs])
    result["cheapest"] = min(WS_IMPLS, key=lambda i: result[f"{_key(i)}_cpu_us_per_delivery"])
    result["runs"] = runs
    return result


async def figure_client_scaling(sizes: Any) -> dict[str, Any]:
    """Figure 8: 100 / 300 / 1,000 clients at the demo's frame rate, default limits."""
    result: dict[str, Any] = {"rate": sizes.scaling_rate, "steps": []}
    for clients in sizes.scaling_clients:
        run = await fanout_run(
            "ours",
            clients=clients,
            count=max(int(sizes.scaling_rate * sizes.scaling_seconds), 5),
            rate=sizes.scaling_rate,
            payload="text",
            server_args=("--default-limits",),
            measure_empty=True,
        )
        seen = run["clients"]
        served = max(seen["clients"], 1)
        step = {
            "clients": clients,
            "refused": seen["refused"],
            "cpu_percent": 100 * run["server_cpu_seconds"] / run["publish"]["seconds"],
            "p50_ms": seen["latency_ms"]["p50"],
            "p99_ms": seen["latency_ms"]["p99"],
            "rss_per_client_kb": (run["rss_before_bytes"] - run["rss_empty_bytes"]) / served / 1024,
            "dropped_clients": run["publish"]["dropped_clients"],
        }
        result["steps"].append(step)
    largest = result["steps"][-1]
    result.update(
        {
            "largest_clients": largest["clients"],
            "largest_refused": largest["refused"],
            "largest_cpu_percent": largest["cpu_percent"],
            "largest_p99_ms": largest["p99_ms"],
            "largest_rss_per_client_kb": largest["rss_per_client_kb"],
        }
    )
    return result


async def _all_generate_running(http: httpx.AsyncClient, batches: int) -> None:
    deadline = time.monotonic() + RUNNING_TIMEOUT
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = (await http.get("/api/v1/demo/status")).json()
        run = status.get("run") or {}
        counts = (run.get("progress") or {}).get("processes", {}).get("GENERATE", {})
        if counts.get("running", 0) >= batches:
            return
        if not status.get("active"):
            break
        await asyncio.sleep(0.05)
    raise RuntimeError(
        f"the GENERATE tasks of a {batches}-batch run did not all start: {run.get('status')} "
        f"{run.get('message')} {(run.get('progress') or {}).get('processes')}"
    )


async def _start_once(
    server: procs.FanoutServer, http: httpx.AsyncClient, batches: int
) -> dict[str, float]:
    # The probe's lateness with nothing happening: what the machine alone adds.
    await server.command("lag_start")
    await asyncio.sleep(IDLE_PROBE_SECONDS)
    idle = await server.command("lag_stop")
    await server.command("lag_start")
    started = time.monotonic()
    response = await http.post("/api/v1/demo/run", json={"batch_count": batches})
    accepted = time.monotonic() - started
    if response.status_code != 202:
        raise RuntimeError(f"run not started: {response.status_code} {response.text}")
    await _all_generate_running(http, batches)
    lag = await server.command("lag_stop")
    token = response.json()["cancel_token"]
    cancelled = await http.delete("/api/v1/demo/cancel", headers={"X-Cancel-Token": token})
    if cancelled.status_code != 200:
        raise RuntimeError(f"cancel failed: {cancelled.status_code} {cancelled.text}")
    return {
        "accept_ms": accepted * 1000,
        "lag_max_ms": lag["max_ms"],
        "lag_p99_ms": lag["p99_ms"],
        "idle_lag_max_ms": idle["max_ms"],
    }


async def figure_start(sizes: Any) -> dict[str, Any]:
    """Figure 9: POST → 202 and the event loop's lateness while a run starts."""
    samples: dict[int, list[dict[str, float]]] = {n: [] for n in sizes.start_batches}
    with tempfile.TemporaryDirectory(prefix="bench-start-") as workspace:
        async with (
            procs.fanout_server(
                "ours", Path(workspace), "--pace", str(START_PACE_SECONDS)
            ) as server,
            httpx.AsyncClient(base_url=server.http_url, timeout=60) as http,
        ):
            await _start_once(server, http, sizes.start_batches[0])  # warm-up
            for _ in range(sizes.start_repeats):
                for batches in sizes.start_batches:
                    samples[batches].append(await _start_once(server, http, batches))
    result: dict[str, Any] = {"batches": list(sizes.start_batches)}
    for batches, runs in samples.items():
        result[f"accept_ms_{batches}"] = median([r["accept_ms"] for r in runs])
        result[f"lag_max_ms_{batches}"] = max(r["lag_max_ms"] for r in runs)
        result[f"lag_p99_ms_{batches}"] = median([r["lag_p99_ms"] for r in runs])
        result[f"idle_lag_max_ms_{batches}"] = max(r["idle_lag_max_ms"] for r in runs)
    smallest, largest = min(sizes.start_batches), max(sizes.start_batches)
    result["accept_ms_smallest"] = result[f"accept_ms_{smallest}"]
    result["accept_ms_largest"] = result[f"accept_ms_{largest}"]
    result["accept_ratio"] = result["accept_ms_largest"] / max(result["accept_ms_smallest"], 1e-6)
    result["lag_max_ms_largest"] = result[f"lag_max_ms_{largest}"]
    result["samples"] = {str(k): v for k, v in samples.items()}
    return result
