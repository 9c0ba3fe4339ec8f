"""Reading a run's published `report.json` (the same place in both executor modes).

In Kubernetes mode the service pod mounts the shared workspace volume, so the report the REPORT
task published is read from the same path as in local mode.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from nextflow_k8s_service.models import is_run_id

MAX_REPORT_BYTES = 1_000_000


def report_path(results_root: Path, run_id: str) -> Path:
    if not is_run_id(run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    return results_root / run_id / "report.json"


def _load(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_REPORT_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if len(raw) > MAX_REPORT_BYTES:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def read_report(results_root: Path, run_id: str) -> dict[str, Any] | None:
    """The parsed report of `run_id`, or None when it does not exist (yet) or is unreadable."""
    return await asyncio.to_thread(_load, report_path(results_root, run_id))


def summarize(report: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The part of a report the `complete` frame carries: totals and per-batch figures."""
    keys = ("batch", "count", "mean", "stdev", "min", "max", "p50", "p95")
    batches = [
        {key: batch.get(key) for key in keys}
        for batch in report.get("batches", [])
        if isinstance(batch, dict)
    ]
    return {
        "totals": report.get("totals"),
        "batches": batches,
        "url": f"/api/v1/demo/runs/{run_id}/report",
    }
