#!/usr/bin/env python3
"""GENERATE step of the demo workflow: write one batch of synthetic rows as CSV.

The rows are seeded by the run id and the batch index, so the same run id always produces
the same data. The step paces itself over `--seconds` so the demo is watchable.

Output: a CSV file with the header `row,value` and `--rows` data rows.
Exit codes: 0 on success, 2 on bad input (the reason is printed on stderr).
Standard library only: it runs in a bare `python:3.12-slim` task pod.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import sys
import time
from typing import NoReturn

PROG = "generate.py"
PROGRESS_STEPS = 4  # progress lines printed while writing (at most)


def fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Write one batch of synthetic rows.")
    parser.add_argument("--run-id", required=True, help="run id (seeds the data)")
    parser.add_argument("--batch", required=True, type=int, help="batch index, 1 or more")
    parser.add_argument("--rows", required=True, type=int, help="rows to write, 1 or more")
    parser.add_argument("--seconds", type=float, default=0.0, help="pacing (0 = no wait)")
    parser.add_argument("--out", required=True, help="CSV file to write")
    args = parser.parse_args(argv)
    if not args.run_id.strip():
        fail("--run-id must not be empty")
    if args.batch < 1:
        fail(f"--batch must be 1 or more, got {args.batch}")
    if args.rows < 1:
        fail(f"--rows must be 1 or more, got {args.rows}")
    if not math.isfinite(args.seconds) or args.seconds < 0:
        fail(f"--seconds must be 0 or more, got {args.seconds}")
    return args


def batch_values(run_id: str, batch: int, rows: int) -> list[float]:
    """The batch's values: normal around a per-batch centre, reproducible per (run_id, batch)."""
    rng = random.Random(f"{run_id}:{batch}")
    centre = rng.uniform(50.0, 150.0)
    spread = rng.uniform(5.0, 25.0)
    return [round(rng.gauss(centre, spread), 4) for _ in range(rows)]


def pace(started: float, seconds: float, fraction: float) -> None:
    """Sleep until `fraction` of the step's `seconds` have passed since `started`."""
    remaining = started + seconds * fraction - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    name = os.path.basename(args.out)
    print(f"generating {args.rows} rows for batch {args.batch} (run {args.run_id})", flush=True)
    values = batch_values(args.run_id, args.batch, args.rows)
    steps = min(PROGRESS_STEPS, args.rows)
    temp = f"{args.out}.tmp{os.getpid()}"
    try:
        with open(temp, "w", encoding="utf-8", newline="") as out:
            out.write("row,value\n")
            written = 0
            for step in range(1, steps + 1):
                upto = args.rows * step // steps
                for row in range(written, upto):
                    out.write(f"{row + 1},{values[row]!r}\n")
                written = upto
                out.flush()
                pace(started, args.seconds, step / steps)
                print(f"wrote {written}/{args.rows} rows", flush=True)
        os.replace(temp, args.out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(temp)
        fail(f"cannot write {args.out}: {exc.strerror or exc}")
    print(f"wrote {name} ({args.rows} rows)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
