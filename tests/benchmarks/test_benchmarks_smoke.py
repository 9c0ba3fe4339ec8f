"""The benchmark harness in smoke mode: every figure is produced as a finite number.

Performance goals are not asserted here (the machines are small and shared); this only keeps
the harness from rotting. Full runs (`uv run python -m benchmarks`) are not part of CI.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import FIGURES, HEADLINES

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow(25)
def test_the_smoke_run_produces_every_figure(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--output-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["mode"] == "smoke"
    assert set(results["figures"]) == {name for name, _ in FIGURES.values()}
    for name, figure in results["figures"].items():
        assert figure["measured"], f"{name}: {figure.get('not_measured_reason')}"
        for key in HEADLINES[name]:
            value = figure[key]
            assert isinstance(value, int | float) and math.isfinite(value), (name, key, value)
    report = (tmp_path / "RESULTS.md").read_text()
    assert "## Machine" in report
    assert "not measured" not in report
