"""Figures 1, 2 and 6: WebSocket fan-out, slow-client isolation, memory per idle client.

Topology: the server (ours, or the bare `websockets` baseline) in one process, all clients in
another (`ws_clients`), this orchestrator in a third that mostly sleeps, so server and clients
each get a core of the two. Frames are injected inside the server process (see `serve`).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks import procs
from benchmarks.stats import median, ratio

SATURATION_WINDOW = 64  # frames the slowest client may lag while publishing flat out


async def fanout_run(
    kind: str,
    *,
    clients: int,
    count: int,
    rate: float | None,
    payload: str,
    stalled: int = 0,
    drain: float = 20.0,
    deflate: bool = True,
    server_args: tuple[str, ...] = (),
    measure_empty: bool = False,
) -> dict[str, Any]:
    """One fresh server, one client process; publish `count` frames; what each side saw."""
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as workspace:
        async with procs.fanout_server(kind, Path(workspace), *server_args) as server:
            empty = await procs.settled_rss(server.pid, samples=3) if measure_empty else 0
            args = ["--clients", str(clients), "--stalled", str(stalled), "--drain", str(drain)]
            if not deflate:
                args.append("--no-deflate")
            async with procs.clients(server.ws_url, *args) as harness:
                before = await procs.settled_rss(server.pid, samples=3, interval=0.1)
                cpu_before = await server.cpu_seconds()
                async with procs.RssSampler(server.pid) as sampler:
                    published = await server.publish(
                        count=count, rate=rate, payload=payload, window=SATURATION_WINDOW
                    )
                    seen = await harness.result(timeout=procs.REPLY_TIMEOUT)
                cpu = await server.cpu_seconds() - cpu_before
    return {
        "server": kind,
        "payload": payload,
        "rate": rate,
        "publish": published,
        "clients": seen,
        "server_cpu_seconds": cpu,
        "rss_empty_bytes": empty,
        "rss_before_bytes": before,
        "rss_peak_bytes": sampler.peak,
        "rss_growth_bytes": max(sampler.peak - before, 0),
    }


def _throughput(run: dict[str, Any]) -> float:
    return float(run["clients"]["delivered_per_second"])


def _cpu_per_delivery(run: dict[str, Any]) -> float:
    """Server CPU microseconds per frame delivered to one client: less noisy than a rate on a
    shared machine, since time spent waiting for a core is not counted."""
    frames = run["clients"]["frames"]
    return float(run["server_cpu_seconds"]) * 1e6 / frames if frames else float("nan")


def _delivered_fraction(run: dict[str, Any]) -> float:
    """Frames received over frames published times healthy clients (1.0: nothing lost)."""
    expected = run["publish"]["published"] * run["clients"]["clients"]
    return float(run["clients"]["frames"]) / expected if expected else float("nan")


KINDS = ("ours", "lines", "baseline")


async def figure_fanout(sizes: Any) -> dict[str, Any]:
    """Figure 1: saturated throughput, CPU per delivered frame and paced latency of ours
    (injected frames), ours end to end from a step's printed lines, and the floor (a bare
    `websockets` server, no compression), alternating; the same raw client for all three."""

    def run(kind: str, count: int, rate: float | None) -> Callable[[], Awaitable[Any]]:
        return lambda: fanout_run(
            kind, clients=sizes.clients, count=count, rate=rate, payload="text"
        )

    done = await procs.runs(
        sizes.concurrent,
        [run(k, sizes.saturation_frames, None) for _ in range(sizes.repeats) for k in KINDS],
    )
    saturated = {kind: [r for r in done if r["server"] == kind] for kind in KINDS}
    rates = {kind: median([_throughput(r) for r in runs]) for kind, runs in saturated.items()}
    cpu = {kind: median([_cpu_per_delivery(r) for r in runs]) for kind, runs in saturated.items()}
    # The goal's rate, and half of what ours sustained above (per client), where neither
    # server should be saturated: latency without queueing.
    sustainable = max(round(rates["ours"] / sizes.clients / 2, 1), 1.0)
    paced_labels = [("goal", sizes.paced_rate)]
    if sizes.half_paced:
        paced_labels.append(("half", sustainable))
    labels = [(label, rate, kind) for label, rate in paced_labels for kind in KINDS]
    paced_runs = await procs.runs(
        sizes.concurrent,
        [run(kind, max(int(rate * sizes.paced_seconds), 5), rate) for _, rate, kind in labels],
    )
    paced = {f"{label}_{kind}": r for (label, _, kind), r in zip(labels, paced_runs, strict=True)}
    result: dict[str, Any] = {
        "clients": sizes.clients,
        "paced_rate": sizes.paced_rate,
        "half_rate": sustainable,
    }
    for kind in KINDS:
        result[f"{kind}_delivered_per_second"] = rates[kind]
        result[f"{kind}_cpu_us_per_delivery"] = cpu[kind]
        for stat in ("p50", "p99"):
            result[f"{kind}_saturated_{stat}_ms"] = median(
                [r["clients"]["latency_ms"][stat] for r in saturated[kind]]
            )
            for label, _ in paced_labels:
                result[f"{label}_{kind}_{stat}"] = paced[f"{label}_{kind}"]["clients"][
                    "latency_ms"
                ][stat]
    for kind, prefix in (("ours", ""), ("lines", "lines_")):
        result[f"{prefix}throughput_ratio"] = ratio(rates[kind], rates["baseline"])
        result[f"{prefix}cpu_ratio"] = ratio(cpu[kind], cpu["baseline"])
        result[f"{prefix}goal_p99_ratio"] = ratio(
            result[f"goal_{kind}_p99"], result["goal_baseline_p99"]
        )
        result[f"goal_{kind}_dropped_clients"] = paced[f"goal_{kind}"]["publish"]["dropped_clients"]
    result.update(
        {f"{name}_delivered_fraction": _delivered_fraction(r) for name, r in paced.items()}
    )
    result["runs"] = {"saturated": saturated, "paced": paced}
    return result


async def figure_slow_client(sizes: Any) -> dict[str, Any]:
    """Figure 2: the healthy clients' p99 with one stalled client vs without, same load.

    The stalled client only pins memory in the service once the kernel's buffers of its
    connection are full (several MB on loopback, whatever SO_RCVBUF the client sets: the
    server's send buffer auto-tunes) and then its 256-frame queue. With per-message deflate,
    pushing that much through one connection means deflating ~100 times as much for the healthy
    clients: about a minute of a saturated core here, which would bury the latency being
    measured. So here the clients do not offer deflate (the server then sends frames as they
    are); the frames are still incompressible noise, and the isolation mechanism under test
    (bounded queue, writer per connection, 1013 on overflow) does not depend on compression.
    """
    healthy = sizes.clients - 1
    runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    for _ in range(sizes.stall_repeats):
        for label, stalled in (("without", 0), ("with", 1)):
            runs[label].append(
                await fanout_run(
                    "ours",
                    clients=healthy,
                    count=sizes.stall_frames,
                    rate=sizes.stall_rate,
                    payload="noise",
                    stalled=stalled,
                    drain=sizes.stall_drain_seconds,
                    # Without deflate: see figure_slow_client's docstring.
                    deflate=False,
                )
            )
    p99_without = median([r["clients"]["latency_ms"]["p99"] for r in runs["without"]])
    p99_with = median([r["clients"]["latency_ms"]["p99"] for r in runs["with"]])
    growth_without = median([r["rss_growth_bytes"] for r in runs["without"]])
    growth_with = median([r["rss_growth_bytes"] for r in runs["with"]])
    return {
        "healthy_clients": healthy,
        "rate": sizes.stall_rate,
        "frames": sizes.stall_frames,
        "healthy_p99_without_ms": p99_without,
        "healthy_p99_with_ms": p99_with,
        "p99_ratio": ratio(p99_with, p99_without),
        "rss_growth_without_mb": growth_without / 2**20,
        "rss_growth_with_mb": growth_with / 2**20,
        "pinned_mb": (growth_with - growth_without) / 2**20,
        "queued_with_mb": median([r["publish"]["peak_backlog_bytes"] for r in runs["with"]])
        / 2**20,
        "queued_without_mb": median([r["publish"]["peak_backlog_bytes"] for r in runs["without"]])
        / 2**20,
        "p99_without_all_ms": [r["clients"]["latency_ms"]["p99"] for r in runs["without"]],
        "p99_with_all_ms": [r["clients"]["latency_ms"]["p99"] for r in runs["with"]],
        "stalled_clients": [r["clients"]["stalled_clients"] for r in runs["with"]],
        "dropped_clients": [r["publish"]["dropped_clients"] for r in runs["with"]],
        "runs": runs,
    }


async def figure_idle_memory(sizes: Any) -> dict[str, Any]:
    """Figure 6: the service's RSS with `clients` idle stream clients vs none."""
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as workspace:
        async with procs.service(Path(workspace)) as running:
            # Warm up: the first connection loads the WebSocket code paths once for all.
            async with procs.clients(running.ws_url, "--clients", "1", "--idle") as warm:
                await warm.result(timeout=30)
            await asyncio.sleep(0.5)
            none = await procs.settled_rss(running.pid)
            async with procs.clients(
                running.ws_url, "--clients", str(sizes.clients), "--idle"
            ) as idle:
                loaded = await procs.settled_rss(running.pid)
                await idle.result(timeout=30)
    per_client = (loaded - none) / sizes.clients / 1024
    return {
        "clients": sizes.clients,
        "rss_none_mb": none / 2**20,
        "rss_clients_mb": loaded / 2**20,
        "per_client_kb": per_client,
    }
