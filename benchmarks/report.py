"""The machine's description and the rendering of `RESULTS.md` from the results."""

from __future__ import annotations

import math
import os
import platform
import sys
from importlib.metadata import version
from typing import Any

import psutil

from benchmarks.sizes import Sizes


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "python": sys.version.split()[0],
        "os": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": {
            name: version(name) for name in ("uvicorn", "websockets", "fastapi", "starlette")
        },
    }


def _n(value: Any, digits: int = 1) -> str:
    if not isinstance(value, int | float) or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _ratio(numerator: Any, denominator: Any) -> float:
    numbers = (int, float)
    if not isinstance(numerator, numbers) or not isinstance(denominator, numbers):
        return math.nan
    return numerator / denominator if denominator else math.nan


def _rounded(values: list[Any]) -> list[Any]:
    return [round(v, 1) if isinstance(v, int | float) else v for v in values]


def _verdict(ok: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[ok]


def _check(fig: dict[str, Any] | None, test: Any) -> bool | None:
    if not fig or not fig.get("measured"):
        return None
    try:
        return bool(test(fig))
    except (KeyError, TypeError):
        return None


def render(results: dict[str, Any], sizes: Sizes) -> str:
    figs = results["figures"]
    fan, slow = figs.get("fanout"), figs.get("slow_client")
    run, api = figs.get("run_overhead"), figs.get("api")
    k8s, idle = figs.get("k8s_cost"), figs.get("idle_memory")
    page = figs.get("page")
    box = results["machine_before"]
    after = results["machine_after"]
    out: list[str] = []
    add = out.append
    add("# Benchmark results\n")
    add(
        f"Mode: **{results['mode']}**, `uv run python -m benchmarks"
        f"{' --smoke' if results['mode'] == 'smoke' else ''}`, "
        f"{_n(results['total_seconds'], 0)} s in all. Every figure is compared with a floor "
        "measured in the same run on the same machine; the absolute numbers only describe "
        "this machine at this moment.\n"
    )
    add("## Machine\n")
    add(f"- CPU: {box['cpu']}, {box['cores']} cores; memory {box['memory_gb']} GB")
    add(f"- Python {box['python']} on {box['os']}")
    add(
        "- " + ", ".join(f"{name} {ver}" for name, ver in box["versions"].items()) + "; "
        "the service runs with in-memory state and the local executor"
    )
    add(
        f"- Load average (1, 5, 15 min) before: {box['load_average']}, after: "
        f"{after['load_average']}. The machine is shared with other work: rates and "
        "latencies move between runs; ratios much less.\n"
    )
    add("## Goals\n")
    add(
        "Each goal with the ratio measured in this run and its verdict; a missed goal stays "
        'in the table. "Floor" is a bare `websockets` server publishing with '
        "`websockets.broadcast`, without compression, read by the same raw client as ours.\n"
    )
    add("| # | Goal | Measured | Verdict |")
    add("|---|---|---|---|")
    _fanout_goals(add, fan)
    _crowd_goals(add, figs.get("client_scaling"), figs.get("start"), api)
    if slow and slow.get("measured"):
        add(
            f"| 2 | stalled client moves healthy p99 by < 10 % | x {_n(slow['p99_ratio'], 2)} "
            f"({_n(slow['healthy_p99_without_ms'])} → {_n(slow['healthy_p99_with_ms'])} ms) | "
            f"{_verdict(_check(slow, lambda f: abs(f['p99_ratio'] - 1) < 0.10))} |"
        )
        add(
            f"| 2 | stalled client pins < 5 MB | {_n(_pinned(slow), 2)} MB (its queue at "
            f"most {_n(slow['queued_with_mb'], 2)} MB; RSS growth "
            f"{_n(slow['rss_growth_with_mb'], 2)} vs {_n(slow['rss_growth_without_mb'], 2)} MB "
            "without it)"
            f"{'' if all(slow['dropped_clients']) else '; the stall never filled the queue'} | "
            f"{_verdict(_check(slow, lambda f: _pinned(f) < 5))} |"
        )
    else:
        add(f"| 2 | slow-client isolation | not measured | {_verdict(None)} |")
    if run and run.get("measured"):
        add(
            f"| 3 | run overhead < 0.5 s ({run['batches']} batches) | "
            f"{_n(run['overhead_seconds'], 3)} s ({_n(run['ours_seconds'], 3)} vs "
            f"{_n(run['direct_seconds'], 3)} s) | "
            f"{_verdict(_check(run, lambda f: f['overhead_seconds'] < 0.5))} |"
        )
    else:
        add(f"| 3 | run overhead | not measured | {_verdict(None)} |")
    if k8s and k8s.get("measured"):
        add(
            f"| 5 | Kubernetes requests per run independent of duration | "
            f"{k8s['short_requests']} ({_n(k8s['short_seconds'], 0)} s run) vs "
            f"{k8s['long_requests']} ({_n(k8s['long_seconds'], 0)} s run) | "
            f"{_verdict(_check(k8s, lambda f: f['long_requests'] <= f['short_requests']))} |"
        )
    else:
        reason = (k8s or {}).get("not_measured_reason", "not run")
        add(f"| 5 | Kubernetes requests per run | not measured: {reason} | {_verdict(None)} |")
    if idle and idle.get("measured"):
        add(
            f"| 6 | < 50 KB per idle client | {_n(idle['per_client_kb'])} KB "
            f"({idle['clients']} clients) | "
            f"{_verdict(_check(idle, lambda f: f['per_client_kb'] < 50))} |"
        )
    else:
        add(f"| 6 | memory per idle client | not measured | {_verdict(None)} |")
    if page and page.get("measured"):
        add(
            f"| 10 | page: no long task > 100 ms at 1,000 log lines/s | "
            f"{_n(page['flood_max_long_task_ms'], 0)} ms at most "
            f"({page['flood_long_tasks']} long tasks, {_n(page['flood_lines_per_second'], 0)} "
            f"lines/s, still following: {page['flood_still_following']}) | "
            f"{_verdict(_check(page, lambda f: f['flood_max_long_task_ms'] <= 100))} |"
        )
        add(
            f"| 10 | idle page: < 10 ms of main-thread work per second | "
            f"{_n(page['idle_task_ms_per_second'], 2)} ms/s over {_n(page['idle_seconds'])} s | "
            f"{_verdict(_check(page, lambda f: f['idle_task_ms_per_second'] < 10))} |"
        )
    else:
        add(f"| 10 | the page in Chromium | not measured | {_verdict(None)} |")
    archive = figs.get("archive_memory")
    if archive and archive.get("measured"):
        add(
            f"| 11 | service and Redis memory flat over {archive['runs']} runs (growth < 1 MB) | "
            f"RSS {_n(archive['rss_growth_mb'], 2)} MB, Redis {_n(archive['redis_growth_mb'], 2)} "
            f"MB once the history was full | "
            f"{_verdict(_check(archive, _flat))} |"
        )
    else:
        add(f"| 11 | memory over many runs | not measured | {_verdict(None)} |")
    add("")
    _sections(add, results, sizes)
    return "\n".join(out) + "\n"


def _row(add: Any, number: str, goal: str, fig: Any, measured: Any, test: Any) -> None:
    """One row of the goals table; `measured(fig)` describes the numbers, `test(fig)` decides."""
    if not fig or not fig.get("measured"):
        reason = (fig or {}).get("not_measured_reason", "not run")
        add(f"| {number} | {goal} | not measured: {reason} | {_verdict(None)} |")
        return
    try:
        text = measured(fig)
    except (KeyError, TypeError):
        text = "n/a"
    add(f"| {number} | {goal} | {text} | {_verdict(_check(fig, test))} |")


def _fanout_goals(add: Any, fan: Any) -> None:
    for kind, label in (("ours", "injected frames"), ("lines", "a step's printed lines")):
        prefix = "" if kind == "ours" else "lines_"
        _row(
            add,
            "1",
            f"fan-out ≥ 0.7 x the floor's throughput, from {label}",
            fan,
            lambda f, k=kind, p=prefix: (
                f"{_n(f[p + 'throughput_ratio'], 2)} x ({_n(f[k + '_delivered_per_second'], 0)}"
                f" vs {_n(f['baseline_delivered_per_second'], 0)} frames/s delivered)"
            ),
            lambda f, p=prefix: f[p + "throughput_ratio"] >= 0.7,
        )
        _row(
            add,
            "1",
            f"CPU per delivered frame ≤ 1.5 x the floor's, from {label}",
            fan,
            lambda f, k=kind, p=prefix: (
                f"{_n(f[p + 'cpu_ratio'], 2)} x ({_n(f[k + '_cpu_us_per_delivery'])} vs "
                f"{_n(f['baseline_cpu_us_per_delivery'])} µs)"
            ),
            lambda f, p=prefix: f[p + "cpu_ratio"] <= 1.5,
        )
        _row(
            add,
            "1",
            f"paced p99 ≤ 1.2 x the floor's, from {label}",
            fan,
            lambda f, k=kind, p=prefix: (
                f"{_n(f[p + 'goal_p99_ratio'], 2)} x ({_n(f['goal_' + k + '_p99'])} vs "
                f"{_n(f['goal_baseline_p99'])} ms at {_n(f['paced_rate'], 0)} frames/s, "
                f"{f['clients']} clients; {f['goal_' + k + '_dropped_clients']} closed 1013)"
            ),
            lambda f, p=prefix: f[p + "goal_p99_ratio"] <= 1.2,
        )


def _crowd_goals(add: Any, scaling: Any, start: Any, api: Any) -> None:
    _row(
        add,
        "8",
        "1,000 clients at 20 frames/s, default settings: p99 < 50 ms, none refused",
        scaling,
        lambda f: (
            f"{f['largest_clients']} clients: p99 {_n(f['largest_p99_ms'])} ms, "
            f"{f['largest_refused']} refused, server CPU {_n(f['largest_cpu_percent'], 0)} %"
        ),
        lambda f: (
            f["largest_clients"] >= 1000 and f["largest_p99_ms"] < 50 and f["largest_refused"] == 0
        ),
    )
    _row(
        add,
        "8",
        "RSS per stream client well below the former 33-40 KB (< 20 KB)",
        scaling,
        lambda f: f"{_n(f['largest_rss_per_client_kb'])} KB ({f['largest_clients']} clients)",
        lambda f: f["largest_rss_per_client_kb"] < 20,
    )
    _row(
        add,
        "9",
        "POST → 202 for the largest run within 2 x of 1 batch",
        start,
        lambda f: (
            f"{_n(f['accept_ratio'], 2)} x ({_n(f['accept_ms_largest'])} vs "
            f"{_n(f['accept_ms_smallest'])} ms)"
        ),
        lambda f: f["accept_ratio"] <= 2,
    )
    _row(
        add,
        "9",
        "event loop never late by more than 20 ms while the largest run starts",
        start,
        lambda f: (
            f"max lateness {_n(f['lag_max_ms_largest'])} ms (idle: "
            f"{_n(f.get('idle_lag_max_ms_' + str(max(f['batches']))))} ms)"
        ),
        lambda f: f["lag_max_ms_largest"] < 20,
    )
    _row(
        add,
        "4",
        "GET /demo/status ≥ 0.8 x GET /health (req/s, concurrency 50)",
        api,
        lambda f: (
            f"{_n(f['status_rate_ratio'], 2)} x ({_n(f['status_per_second'], 0)} vs "
            f"{_n(f['health_per_second'], 0)} req/s); attaching POST "
            f"{_n(f['attach_rate_ratio'], 2)} x"
        ),
        lambda f: f["status_rate_ratio"] >= 0.8,
    )


def _offered(fan: dict[str, Any], run: str) -> Any:
    return fan["runs"]["paced"][run]["publish"]["offered_rate"]


def _pinned(slow: dict[str, Any]) -> float:
    """What the stalled client pinned: the larger of the RSS difference and the bytes its
    queue held at its worst (RSS understates it when the allocator reuses freed memory)."""
    return float(max(slow["pinned_mb"], slow.get("queued_with_mb") or 0.0))


def _fanout_section(add: Any, fan: dict[str, Any]) -> None:
    clients = fan["clients"]
    add("## 1. Fan-out\n")
    add(
        f"{clients} WebSocket clients in one process (a minimal raw client, `raw_ws`, without "
        "compression: the `websockets` client would saturate its own core first), the server "
        "in another, both servers on uvloop. Log frames of 50 realistic lines (about 6 KB of "
        "JSON). *ours*: frames built with `Frame.build` and injected through "
        "`Broadcaster.publish`; *lines*: the same 50 lines reported one by one as a step's "
        "output (`LogEmitted`) to a real `RunSession`, which cuts them into frames, keeps them "
        "in the store, relays them to the live view and the broadcaster; *floor*: a bare "
        "`websockets` server with `websockets.broadcast`, no compression. Each frame carries "
        "its send time; latency is measured at the client. Flat out, the publisher waits "
        "whenever the slowest client is 64 frames behind. Paced frames carry the time they "
        "were due (no coordinated omission).\n"
    )
    add("| | ours | lines | floor | ours/floor | lines/floor |")
    add("|---|---|---|---|---|---|")
    base_rate = fan["baseline_delivered_per_second"]
    add(
        f"| delivered frames/s (all clients) | {_n(fan['ours_delivered_per_second'], 0)} | "
        f"{_n(fan['lines_delivered_per_second'], 0)} | {_n(base_rate, 0)} | "
        f"{_n(fan['throughput_ratio'], 2)} | {_n(fan['lines_throughput_ratio'], 2)} |"
    )
    add(
        f"| server CPU per delivered frame (µs) | {_n(fan['ours_cpu_us_per_delivery'])} | "
        f"{_n(fan['lines_cpu_us_per_delivery'])} | {_n(fan['baseline_cpu_us_per_delivery'])} | "
        f"{_n(fan['cpu_ratio'], 2)} | {_n(fan['lines_cpu_ratio'], 2)} |"
    )
    add(
        "| flat out: p50 / p99 (ms) | "
        + " | ".join(
            f"{_n(fan[k + '_saturated_p50_ms'])} / {_n(fan[k + '_saturated_p99_ms'])}"
            for k in ("ours", "lines", "baseline")
        )
        + " | | |"
    )
    for label in ("goal", "half"):
        if f"{label}_ours_p99" not in fan:
            continue
        rate = fan["paced_rate"] if label == "goal" else fan["half_rate"]
        cells = " | ".join(
            f"{_n(fan[f'{label}_{k}_p50'])} / {_n(fan[f'{label}_{k}_p99'])}, "
            f"{_n(fan[f'{label}_{k}_delivered_fraction'] * 100, 0)} %"
            for k in ("ours", "lines", "baseline")
        )
        ratios = " | ".join(
            _n(_ratio(fan[f"{label}_{k}_p99"], fan[f"{label}_baseline_p99"]), 2)
            for k in ("ours", "lines")
        )
        add(f"| paced {_n(rate, 1)} frames/s: p50 / p99 (ms), delivered | {cells} | {ratios} |")
    add("")


def _sections(add: Any, results: dict[str, Any], sizes: Sizes) -> None:
    figs = results["figures"]
    for name, fig in figs.items():
        if not fig.get("measured"):
            add(f"## {name}: not measured\n\n{fig.get('not_measured_reason', '')}\n")
    fan = figs.get("fanout")
    if fan and fan.get("measured"):
        _fanout_section(add, fan)
    slow = figs.get("slow_client")
    if slow and slow.get("measured"):
        add("## 2. Slow-client isolation\n")
        add(
            f"Ours only: {slow['healthy_clients']} healthy clients, frames paced at "
            f"{_n(slow['rate'], 0)}/s ({slow['frames']} frames of 50 lines of 96 characters of "
            "base64 noise, about 9 KB), alternately without and with one more client that "
            "stops reading (32 KB SO_RCVBUF, `max_queue=1`); medians over the repeats. The "
            "clients do not offer per-message deflate here: filling the stalled connection's "
            "kernel buffers (several MB: the server's send buffer auto-tunes) and then its "
            "256-frame queue would otherwise mean deflating ~100 times as much for the healthy "
            "clients, a minute of saturated CPU on this machine that would bury the latency "
            "being measured. RSS is sampled every 20 ms; growth is the peak during the run "
            "minus the RSS just before it.\n"
        )
        add(
            f"- healthy p99: {_n(slow['healthy_p99_without_ms'])} ms without, "
            f"{_n(slow['healthy_p99_with_ms'])} ms with the stalled client "
            f"(x {_n(slow['p99_ratio'], 2)})"
        )
        add(
            f"- healthy p99 per repeat (ms): without {_rounded(slow['p99_without_all_ms'])}, "
            f"with {_rounded(slow['p99_with_all_ms'])}"
        )
        add(
            f"- the most one client had queued in the service: "
            f"{_n(slow['queued_with_mb'], 2)} MB with the stalled client, "
            f"{_n(slow['queued_without_mb'], 2)} MB without it"
        )
        add(
            "- RSS growth (an underestimate: the allocator reuses memory freed earlier in the "
            f"run): {_n(slow['rss_growth_without_mb'], 2)} MB without, "
            f"{_n(slow['rss_growth_with_mb'], 2)} MB with → pinned "
            f"{_n(slow['pinned_mb'], 2)} MB"
        )
        add(
            f"- the stalled client: {slow['stalled_clients']} (close code seen, and frames "
            "that were still in socket buffers when it finally read); clients closed for "
            f"lagging: {slow['dropped_clients']}\n"
        )
        add(
            "What a stalled client can pin is bounded in frames, not bytes: "
            "WEBSOCKET_QUEUE_FRAMES (256) frames, each shared with the other clients until "
            "they have sent it, after which only the stalled queue holds it. With these ~9 KB "
            "frames that is ≤ 2.3 MB, which the measurement matches; but a `log` frame may "
            "carry 50 lines of up to 8 KB each (the local executor's line limit), so the "
            "worst case is 256 x 400 KB ≈ 100 MB per stalled client. A byte budget per "
            "client (or a cap on a frame's size) would make the < 5 MB goal hold for any "
            "input.\n"
        )
    run = figs.get("run_overhead")
    if run and run.get("measured"):
        add("## 3. Run overhead\n")
        add(
            f"{run['batches']} batches, zero pacing, {run['repeats']} alternating pairs after "
            "a warm-up pair; medians. Ours: POST /api/v1/demo/run → the `complete` frame on "
            "the stream, service as shipped (`python -m nextflow_k8s_service`). Floor: "
            "`workflows/bin` scripts run directly as subprocesses in the same dependency "
            "order and concurrency.\n"
        )
        add(
            f"- ours {_n(run['ours_seconds'], 3)} s, direct {_n(run['direct_seconds'], 3)} s, "
            f"overhead {_n(run['overhead_seconds'], 3)} s (difference of the medians; median "
            f"of the per-pair differences: {_n(run.get('paired_overhead_seconds'), 3)} s)"
        )
        add(
            f"- all runs (s): ours {[round(x, 3) for x in run['ours_all']]}, direct "
            f"{[round(x, 3) for x in run['direct_all']]}\n"
        )
    api = figs.get("api")
    if api and api.get("measured"):
        add("## 4. API at concurrency 50\n")
        add(
            "The service as shipped with a long-paced run in progress, so `POST /demo/run` "
            "attaches (200). 50 keep-alive aiohttp clients in the harness process; rounds "
            "alternate the endpoints; medians of the rounds. `/health` is the framework's "
            "floor. Rate limits are raised so far that none refuses (every client shares one "
            "address), so the limiter's cost is included.\n"
        )
        add("| endpoint | req/s | p99 (ms) | req/s vs /health | p99 vs /health | errors |")
        add("|---|---|---|---|---|---|")
        for name, label in (
            ("health", "GET /health"),
            ("status", "GET /api/v1/demo/status"),
            ("attach", "POST /api/v1/demo/run (attaching)"),
        ):
            rate_ratio = api.get(f"{name}_rate_ratio", 1.0)
            p99_ratio = api.get(f"{name}_p99_ratio", 1.0)
            add(
                f"| {label} | {_n(api[f'{name}_per_second'], 0)} | "
                f"{_n(api[f'{name}_p99_ms'])} | {_n(rate_ratio, 2)} | {_n(p99_ratio, 2)} | "
                f"{api[f'{name}_errors']} |"
            )
        add("")
    k8s = figs.get("k8s_cost")
    if k8s and k8s.get("measured"):
        add("## 5. Kubernetes API cost\n")
        add(
            "The Kubernetes executor with its production timings, through the real "
            "`kubernetes_asyncio` client, against the test suite's API fake, which records "
            f"each request. A {k8s['batches']}-batch run is played in real time (controller, "
            "5 GENERATE pods, 5 ANALYZE pods, REPORT; a log line per running pod per second) "
            "and stretched over two durations. Watches time out server-side after 240 s, so "
            "a run longer than that re-issues each watch once per 240 s: O(1) per run up to "
            "that length, then + one request per watch per 240 s.\n"
        )
        add("| run | seconds | requests | by call |")
        add("|---|---|---|---|")
        for label in ("short", "long"):
            detail = k8s["runs"][label]
            calls = ", ".join(f"{k}: {v}" for k, v in detail["by_call"].items())
            add(f"| {label} | {_n(detail['run_seconds'])} | {detail['requests']} | {calls} |")
        add("")
    idle = figs.get("idle_memory")
    if idle and idle.get("measured"):
        add("## 6. Memory per idle client\n")
        add(
            f"The service as shipped; RSS (median of 5 readings) after one warm-up client "
            f"came and went: {_n(idle['rss_none_mb'])} MB with no client, "
            f"{_n(idle['rss_clients_mb'])} MB with {idle['clients']} idle clients → "
            f"{_n(idle['per_client_kb'])} KB each.\n"
        )
    _later_sections(add, figs)


def _flat(fig: dict[str, Any]) -> bool:
    return bool(fig["rss_growth_mb"] < 1 and fig["redis_growth_mb"] < 1)


def _later_sections(add: Any, figs: dict[str, Any]) -> None:
    impls = figs.get("ws_impls")
    if impls and impls.get("measured"):
        add("## 7. uvicorn's WebSocket implementations\n")
        add(
            f"Ours, flat out to {impls['clients']} clients, once per implementation, "
            f"alternating; medians. Cheapest here: `{impls['cheapest']}` (the service pins "
            "`websockets-sansio`, see `server.py`).\n"
        )
        add("| implementation | server CPU per delivered frame (µs) | delivered frames/s |")
        add("|---|---|---|")
        for impl in ("websockets", "websockets_sansio", "wsproto"):
            add(
                f"| {impl.replace('_', '-')} | {_n(impls[impl + '_cpu_us_per_delivery'])} | "
                f"{_n(impls[impl + '_delivered_per_second'], 0)} |"
            )
        add("")
    scaling = figs.get("client_scaling")
    if scaling and scaling.get("measured"):
        add("## 8. A crowd\n")
        add(
            f"Ours with the default settings (client cap, per-address connect rate: every "
            f"client comes from one address, like a crowd behind one NAT), frames paced at "
            f"{_n(scaling['rate'], 0)}/s. RSS per client: RSS with the clients connected minus "
            "RSS of the same server before any connected, over the clients.\n"
        )
        add("| clients | refused | server CPU | p50 / p99 (ms) | RSS per client (KB) | 1013 |")
        add("|---|---|---|---|---|---|")
        for step in scaling["steps"]:
            add(
                f"| {step['clients']} | {step['refused']} | {_n(step['cpu_percent'], 0)} % | "
                f"{_n(step['p50_ms'])} / {_n(step['p99_ms'])} | "
                f"{_n(step['rss_per_client_kb'])} | {step['dropped_clients']} |"
            )
        add("")
    start = figs.get("start")
    if start and start.get("measured"):
        add("## 9. Starting a run\n")
        add(
            "Ours, local executor, GENERATE paced long enough to keep every task running. "
            "POST /api/v1/demo/run → 202 (median), and the lateness of a probe that wakes the "
            "server's event loop every 2 ms, from the POST until every GENERATE task runs "
            "(max over the repeats; it includes time the process waited for a core on a "
            "shared machine: the last column is the same probe over 0.5 s with nothing "
            "happening, just before each start). Each run is cancelled before the next.\n"
        )
        add("| batches | POST → 202 (ms) | loop lateness max / p99 (ms) | idle max (ms) |")
        add("|---|---|---|---|")
        for batches in start["batches"]:
            add(
                f"| {batches} | {_n(start[f'accept_ms_{batches}'])} | "
                f"{_n(start[f'lag_max_ms_{batches}'])} / {_n(start[f'lag_p99_ms_{batches}'])} | "
                f"{_n(start.get(f'idle_lag_max_ms_{batches}'))} |"
            )
        add("")
    page = figs.get("page")
    if page and page.get("measured"):
        add("## 10. The page in Chromium\n")
        add(
            "Debian's Chromium (headless, no GPU) on the page served by create_app. At rest "
            f"(stream live, no run) for {_n(page['idle_seconds'])} s, the renderer's main "
            f"thread worked {_n(page['idle_task_ms_per_second'], 2)} ms per second (CDP "
            "`TaskDuration`). Then "
            f"{page['flood_frames']} log frames of 50 lines at 20 frames/s "
            f"({_n(page['flood_lines_per_second'], 0)} lines/s achieved) went through "
            "`Broadcaster.publish`: the page reported "
            f"{page['flood_long_tasks']} long tasks (> 50 ms), the longest "
            f"{_n(page['flood_max_long_task_ms'], 0)} ms, and the console was still "
            f"following the newest line at its 500-line cap: {page['flood_still_following']}.\n"
        )
    archive = figs.get("archive_memory")
    if archive and archive.get("measured"):
        add("## 11. Memory over many runs\n")
        add(
            f"Ours with Redis state: {archive['runs']} runs of {archive['batches']} batches, each "
            "followed live and then replayed over `GET /runs/{id}/events` "
            f"({_n(archive['frames_per_run'], 0)} frames, {_n(archive['replay_kb_per_run'])} KB "
            f"a replay). Once the history ({archive['history_limit']} runs) is full, service RSS "
            f"is {_n(archive['rss_at_full_history_mb'])} MB and Redis `used_memory` "
            f"{_n(archive['redis_at_full_history_mb'], 2)} MB; after the last run they have "
            f"grown by {_n(archive['rss_growth_mb'], 2)} MB and "
            f"{_n(archive['redis_growth_mb'], 2)} MB.\n"
        )
