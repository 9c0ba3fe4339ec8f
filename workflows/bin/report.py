#!/usr/bin/env python3
"""REPORT step of the demo workflow: aggregate the per-batch statistics into one report.

Writes `{"run_id", "generated_at", "batches": [...sorted by batch], "totals": {"batches",
"count", "sum", "mean", "min", "max"}}`, where each batch entry is the object written by
analyze.py. `totals.mean` is the mean over all rows (total sum / total count), not the mean of
the batch means. `generated_at` is ISO-8601 UTC with offset.

Exit codes: 0 on success, 2 on bad input (the reason is printed on stderr).
Standard library only: it runs in a bare `python:3.12-slim` task pod.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from datetime import UTC, datetime
from typing import Any, NoReturn

PROG = "report.py"
NUMBER_FIELDS = ("sum", "mean", "stdev", "min", "max", "p50", "p95")


def fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Aggregate per-batch statistics.")
    parser.add_argument("--run-id", required=True, help="run id recorded in the report")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("stats", nargs="*", help="stats_<i>.json files written by analyze.py")
    args = parser.parse_args(argv)
    if not args.run_id.strip():
        fail("--run-id must not be empty")
    if not args.stats:
        fail("no stats files given")
    return args


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_stats(path: str) -> dict[str, Any]:
    """One batch's statistics from `path`, checked; calls `fail` on any problem."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        fail(f"{path}: not a stats file: {exc}")
    if not isinstance(document, dict):
        fail(f"{path}: not a stats file: expected a JSON object")
    batch, count = document.get("batch"), document.get("count")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        fail(f"{path}: 'batch' must be an integer of 1 or more, got {batch!r}")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        fail(f"{path}: 'count' must be an integer of 1 or more, got {count!r}")
    entry: dict[str, Any] = {"batch": batch, "count": count}
    for field in NUMBER_FIELDS:
        value = document.get(field)
        if not is_number(value):
            fail(f"{path}: {field!r} must be a finite number, got {value!r}")
        entry[field] = value
    return entry


def aggregate(run_id: str, batches: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(batches, key=lambda entry: entry["batch"])
    count = sum(entry["count"] for entry in ordered)
    total = math.fsum(entry["sum"] for entry in ordered)
    return {
        "run_id": run_id,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "batches": ordered,
        "totals": {
            "batches": len(ordered),
            "count": count,
            "sum": total,
            "mean": total / count,
            "min": min(entry["min"] for entry in ordered),
            "max": max(entry["max"] for entry in ordered),
        },
    }


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
    print(f"aggregating {len(args.stats)} batches for run {args.run_id}", flush=True)
    batches = [read_stats(path) for path in args.stats]
    seen: dict[int, str] = {}
    for path, entry in zip(args.stats, batches, strict=True):
        if entry["batch"] in seen:
            fail(f"batch {entry['batch']} appears twice ({seen[entry['batch']]} and {path})")
        seen[entry["batch"]] = path
    report = aggregate(args.run_id, batches)
    totals = report["totals"]
    print(
        f"run {args.run_id}: {totals['batches']} batches, {totals['count']} rows, "
        f"mean={totals['mean']:.3f} min={totals['min']:.3f} max={totals['max']:.3f}",
        flush=True,
    )
    write_json(args.out, report)
    print(f"wrote {os.path.basename(args.out)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
