"""`uv run python -m benchmarks [--smoke] [--only N ...] [--output-dir DIR]`.

Runs the figures in order (1 fan-out, 2 slow client, 3 run overhead, 4 API, 5 Kubernetes API
cost, 6 idle memory, 7 WebSocket implementations, 8 client scaling, 9 run start and loop lag,
10 the page in Chromium, 11 archive memory over 50 runs) and writes `results.json` and
`RESULTS.md` to the output directory (default: this package's directory). A figure that fails
is recorded as not measured, with the error, and the others still run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.api_load import figure_api
from benchmarks.archive_memory import figure_archive_memory
from benchmarks.fanout import figure_fanout, figure_idle_memory, figure_slow_client
from benchmarks.k8s_cost import figure_k8s_cost
from benchmarks.page import figure_page
from benchmarks.report import machine, render
from benchmarks.run_overhead import figure_run_overhead
from benchmarks.scaling import figure_client_scaling, figure_start, figure_ws_impls
from benchmarks.sizes import FULL, SMOKE, Sizes

HERE = Path(__file__).resolve().parent
SMOKE_CONCURRENCY = 3  # figures run at once in smoke mode

FigureFn = Callable[[Sizes], Awaitable[dict[str, Any]]]

FIGURES: dict[str, tuple[str, FigureFn]] = {
    "1": ("fanout", figure_fanout),
    "2": ("slow_client", figure_slow_client),
    "3": ("run_overhead", figure_run_overhead),
    "4": ("api", figure_api),
    "5": ("k8s_cost", figure_k8s_cost),
    "6": ("idle_memory", figure_idle_memory),
    "7": ("ws_impls", figure_ws_impls),
    "8": ("client_scaling", figure_client_scaling),
    "9": ("start", figure_start),
    "10": ("page", figure_page),
    "11": ("archive_memory", figure_archive_memory),
}

#: The figures' headline numbers: each must be a finite number in a successful run.
HEADLINES: dict[str, tuple[str, ...]] = {
    "fanout": (
        "ours_delivered_per_second",
        "lines_delivered_per_second",
        "baseline_delivered_per_second",
        "throughput_ratio",
        "lines_throughput_ratio",
        "cpu_ratio",
        "lines_cpu_ratio",
        "goal_p99_ratio",
        "goal_ours_p99",
        "goal_baseline_p99",
    ),
    "slow_client": (
        "healthy_p99_without_ms",
        "healthy_p99_with_ms",
        "p99_ratio",
        "pinned_mb",
        "queued_with_mb",
    ),
    "run_overhead": ("ours_seconds", "direct_seconds", "overhead_seconds"),
    "api": (
        "health_per_second",
        "status_per_second",
        "attach_per_second",
        "status_rate_ratio",
        "attach_rate_ratio",
        "status_p99_ms",
        "attach_p99_ms",
    ),
    "k8s_cost": ("short_requests", "long_requests", "requests_ratio"),
    "idle_memory": ("rss_none_mb", "rss_clients_mb", "per_client_kb"),
    "ws_impls": (
        "websockets_cpu_us_per_delivery",
        "websockets_sansio_cpu_us_per_delivery",
        "wsproto_cpu_us_per_delivery",
    ),
    "client_scaling": (
        "largest_clients",
        "largest_refused",
        "largest_cpu_percent",
        "largest_p99_ms",
        "largest_rss_per_client_kb",
    ),
    "start": ("accept_ms_smallest", "accept_ms_largest", "accept_ratio", "lag_max_ms_largest"),
    "page": ("idle_task_ms_per_second", "flood_lines_per_second", "flood_max_long_task_ms"),
    "archive_memory": ("rss_growth_mb", "redis_growth_mb", "replay_kb_per_run"),
}


def _finite(result: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    """The headline keys that are missing or not finite numbers."""
    bad = []
    for key in keys:
        value = result.get(key)
        if not isinstance(value, int | float) or not math.isfinite(value):
            bad.append(key)
    return bad


async def _figure(number: str, name: str, figure: FigureFn, sizes: Sizes) -> dict[str, Any]:
    print(f"figure {number} ({name}) ...", flush=True)
    figure_started = time.monotonic()
    try:
        result = await figure(sizes)
        bad = _finite(result, HEADLINES[name])
        result["measured"] = not bad
        if bad:
            result["not_measured_reason"] = f"no finite value for {', '.join(bad)}"
    except Exception as exc:
        traceback.print_exc()
        result = {"measured": False, "not_measured_reason": f"{type(exc).__name__}: {exc}"}
    result["seconds"] = time.monotonic() - figure_started
    print(f"figure {number} ({name}) done in {result['seconds']:.1f}s", flush=True)
    return result


async def run(sizes: Sizes, only: list[str]) -> dict[str, Any]:
    """Every figure in turn; in smoke mode all at once (the numbers mean nothing there, and
    the smoke run is part of the test suite, which must stay quick)."""
    results: dict[str, Any] = {"mode": "smoke" if sizes is SMOKE else "full"}
    results["machine_before"] = machine()
    started = time.monotonic()
    chosen = [(n, name, fn) for n, (name, fn) in FIGURES.items() if not only or n in only]
    if sizes is SMOKE:
        # A few at a time: all at once would only make the processes' start-ups thrash.
        slots = asyncio.Semaphore(SMOKE_CONCURRENCY)

        async def limited(number: str, name: str, figure: FigureFn) -> dict[str, Any]:
            async with slots:
                return await _figure(number, name, figure, sizes)

        done = await asyncio.gather(*(limited(n, name, fn) for n, name, fn in chosen))
    else:
        done = [await _figure(n, name, fn, sizes) for n, name, fn in chosen]
    results["figures"] = {name: result for (_, name, _), result in zip(chosen, done, strict=True)}
    results["total_seconds"] = time.monotonic() - started
    results["machine_after"] = machine()
    return results


def _no_nan(value: Any) -> Any:
    """NaN is not JSON: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _no_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(item) for item in value]
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness")
    parser.add_argument("--only", nargs="*", default=[], choices=sorted(FIGURES))
    parser.add_argument("--output-dir", type=Path, default=HERE)
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite RESULTS.md from results.json"
    )
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    if args.render_only:
        saved = json.loads((args.output_dir / "results.json").read_text())
        (args.output_dir / "RESULTS.md").write_text(render(saved, sizes))
        return
    results = asyncio.run(run(sizes, args.only))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    clean = _no_nan(results)
    (args.output_dir / "results.json").write_text(json.dumps(clean, indent=1) + "\n")
    (args.output_dir / "RESULTS.md").write_text(render(results, sizes))
    print(f"wrote {args.output_dir / 'RESULTS.md'} and results.json")


if __name__ == "__main__":
    main()
