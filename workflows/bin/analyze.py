#!/usr/bin/env python3
"""ANALYZE step of the demo workflow: statistics of one batch written by GENERATE.

Reads a CSV with a `value` column and writes a JSON object
`{"batch", "count", "sum", "mean", "stdev", "min", "max", "p50", "p95"}`.

- `stdev` is the sample standard deviation (n - 1 in the denominator); 0 for a single row.
- Percentiles use linear interpolation between closest ranks: for sorted values x[0..n-1] the
  p-th percentile is at position h = (n - 1) * p / 100, i.e. x[floor(h)] + (h - floor(h)) *
  (x[floor(h) + 1] - x[floor(h)]). This is numpy's default ("linear"), Excel's PERCENTILE.INC
  and Python's `statistics.quantiles(..., method="inclusive")`; p50 is the median.

Exit codes: 0 on success, 2 on bad input (the reason is printed on stderr).
Standard library only: it runs in a bare `python:3.12-slim` task pod.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import statistics
import sys
import time
from typing import NoReturn

PROG = "analyze.py"


def fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Statistics of one batch.")
    parser.add_argument("--batch", required=True, type=int, help="batch index, 1 or more")
    parser.add_argument("--input", required=True, help="CSV written by generate.py")
    parser.add_argument("--seconds", type=float, default=0.0, help="pacing (0 = no wait)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    if args.batch < 1:
        fail(f"--batch must be 1 or more, got {args.batch}")
    if not math.isfinite(args.seconds) or args.seconds < 0:
        fail(f"--seconds must be 0 or more, got {args.seconds}")
    return args


def read_values(path: str) -> list[float]:
    """The `value` column of the CSV at `path`; calls `fail` on any problem."""
    values: list[float] = []
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "value" not in reader.fieldnames:
                fail(f"{path}: not a batch CSV (no 'value' column in the header)")
            for record in reader:
                text = record.get("value")
                try:
                    value = float(text) if text is not None else math.nan
                except ValueError:
                    value = math.nan
                if not math.isfinite(value):
                    fail(f"{path}, line {reader.line_num}: not a number: {text!r}")
                values.append(value)
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        fail(f"{path}: cannot read: {exc}")
    if not values:
        fail(f"{path}: no rows")
    return values


def percentile(ordered: list[float], p: float) -> float:
    """The p-th percentile (0..100) of sorted values, linear interpolation (see module doc)."""
    position = (len(ordered) - 1) * p / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def describe(batch: int, values: list[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    return {
        "batch": batch,
        "count": len(values),
        "sum": math.fsum(values),
        "mean": statistics.fmean(values),
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": ordered[0],
        "max": ordered[-1],
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
    }


def pace(started: float, seconds: float, fraction: float) -> None:
    """Sleep until `fraction` of the step's `seconds` have passed since `started`."""
    remaining = started + seconds * fraction - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def write_json(path: str, document: object) -> None:
    temp = f"{path}.tmp{os.getpid()}"
    try:
        with open(temp, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(temp)
        fail(f"cannot write {path}: {exc.strerror or exc}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    print(f"analyzing batch {args.batch} from {os.path.basename(args.input)}", flush=True)
    values = read_values(args.input)
    print(f"read {len(values)} values", flush=True)
    pace(started, args.seconds, 0.5)
    stats = describe(args.batch, values)
    pace(started, args.seconds, 1.0)
    print(
        f"batch {args.batch}: count={stats['count']} mean={stats['mean']:.3f} "
        f"stdev={stats['stdev']:.3f} min={stats['min']:.3f} max={stats['max']:.3f}",
        flush=True,
    )
    print(f"batch {args.batch}: p50={stats['p50']:.3f} p95={stats['p95']:.3f}", flush=True)
    write_json(args.out, stats)
    print(f"wrote {os.path.basename(args.out)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
