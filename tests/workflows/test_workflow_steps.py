"""The workflow's step scripts (workflows/bin), run as subprocesses exactly as the executors do."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

WORKFLOW_DIR = Path(__file__).resolve().parents[2] / "workflows"
BIN = WORKFLOW_DIR / "bin"
SCRIPTS = ("generate.py", "analyze.py", "report.py")


def run(script: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BIN / script), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(script: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = run(script, *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result


def generate(tmp: Path, run_id: str, batch: int, rows: int, name: str | None = None) -> Path:
    out = tmp / (name or f"batch_{batch}.csv")
    ok(
        "generate.py",
        "--run-id",
        run_id,
        "--batch",
        str(batch),
        "--rows",
        str(rows),
        "--seconds",
        "0",
        "--out",
        out,
        cwd=tmp,
    )
    return out


def analyze(tmp: Path, batch: int, csv_path: Path) -> dict[str, float]:
    out = tmp / f"stats_{batch}.json"
    ok(
        "analyze.py",
        "--batch",
        str(batch),
        "--input",
        csv_path,
        "--seconds",
        "0",
        "--out",
        out,
        cwd=tmp,
    )
    stats: dict[str, float] = json.loads(out.read_text())
    return stats


def read_values(path: Path) -> list[float]:
    with path.open(newline="") as handle:
        return [float(record["value"]) for record in csv.DictReader(handle)]


def write_csv(path: Path, values: list[float]) -> Path:
    path.write_text("row,value\n" + "".join(f"{i},{v!r}\n" for i, v in enumerate(values, 1)))
    return path


# --- the files themselves --------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_an_executable_standalone_python3_script(script: str) -> None:
    path = BIN / script
    assert path.read_text().startswith("#!/usr/bin/env python3\n")
    assert os.access(path, os.X_OK), f"{path} must be executable (Nextflow runs it from PATH)"
    imports = re.findall(r"^(?:from|import) (\w+)", path.read_text(), flags=re.MULTILINE)
    assert set(imports) <= set(sys.stdlib_module_names) | {"__future__"}


def test_demo_nf_calls_the_bin_scripts_and_names_the_processes() -> None:
    text = (WORKFLOW_DIR / "demo.nf").read_text()
    for process, script in zip(("GENERATE", "ANALYZE", "REPORT"), SCRIPTS, strict=True):
        assert f"process {process} {{" in text
        assert f"{script} " in text
    config = (WORKFLOW_DIR / "nextflow.config").read_text()
    assert "k8s.computeResourceType = 'Pod'" in config
    assert "nextflowVersion = '!>=25.04.7'" in config


# --- generate --------------------------------------------------------------------------------


def test_generate_writes_the_requested_rows_and_reports_progress(tmp_path: Path) -> None:
    result = ok(
        "generate.py",
        "--run-id",
        "r0123456789a",
        "--batch",
        "3",
        "--rows",
        "100",
        "--seconds",
        "0",
        "--out",
        "batch_3.csv",
        cwd=tmp_path,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("generating 100 rows for batch 3")
    assert "wrote 100/100 rows" in lines
    assert lines[-1] == "wrote batch_3.csv (100 rows)"
    with (tmp_path / "batch_3.csv").open(newline="") as handle:
        records = list(csv.DictReader(handle))
    assert [int(r["row"]) for r in records] == list(range(1, 101))
    assert all(math.isfinite(float(r["value"])) for r in records)


def test_generate_is_reproducible_per_run_id_and_batch(tmp_path: Path) -> None:
    first = generate(tmp_path, "r0123456789a", 1, 50, "a.csv").read_bytes()
    again = generate(tmp_path, "r0123456789a", 1, 50, "b.csv").read_bytes()
    other_run = generate(tmp_path, "rfedcba98765", 1, 50, "c.csv").read_bytes()
    other_batch = generate(tmp_path, "r0123456789a", 2, 50, "d.csv").read_bytes()
    assert first == again
    assert first != other_run
    assert first != other_batch


def test_generate_paces_itself(tmp_path: Path) -> None:
    started = time.monotonic()
    ok(
        "generate.py",
        "--run-id",
        "r1",
        "--batch",
        "1",
        "--rows",
        "10",
        "--seconds",
        "0.4",
        "--out",
        "batch_1.csv",
        cwd=tmp_path,
    )
    assert time.monotonic() - started >= 0.4


# --- analyze ---------------------------------------------------------------------------------


def test_analyze_computes_real_statistics(tmp_path: Path) -> None:
    csv_path = generate(tmp_path, "r0123456789a", 4, 257)
    values = read_values(csv_path)
    stats = analyze(tmp_path, 4, csv_path)
    assert stats["batch"] == 4
    assert stats["count"] == 257
    assert stats["sum"] == pytest.approx(math.fsum(values))
    assert stats["mean"] == pytest.approx(statistics.fmean(values))
    assert stats["stdev"] == pytest.approx(statistics.stdev(values))
    assert stats["min"] == min(values)
    assert stats["max"] == max(values)
    assert stats["p50"] == pytest.approx(statistics.median(values))
    quantiles = statistics.quantiles(values, n=100, method="inclusive")
    assert stats["p95"] == pytest.approx(quantiles[94])


def test_analyze_percentiles_interpolate_linearly(tmp_path: Path) -> None:
    csv_path = write_csv(
        tmp_path / "batch_1.csv", [float(v) for v in (7, 1, 10, 4, 2, 9, 3, 8, 5, 6)]
    )
    stats = analyze(tmp_path, 1, csv_path)
    # Sorted 1..10: p50 at position 4.5 -> 5.5; p95 at position 8.55 -> 9 + 0.55 * (10 - 9).
    assert stats["p50"] == pytest.approx(5.5)
    assert stats["p95"] == pytest.approx(9.55)
    assert stats["stdev"] == pytest.approx(statistics.stdev(range(1, 11)))


def test_analyze_single_row_has_zero_stdev(tmp_path: Path) -> None:
    stats = analyze(tmp_path, 1, write_csv(tmp_path / "batch_1.csv", [42.5]))
    assert stats == {
        "batch": 1,
        "count": 1,
        "sum": 42.5,
        "mean": 42.5,
        "stdev": 0.0,
        "min": 42.5,
        "max": 42.5,
        "p50": 42.5,
        "p95": 42.5,
    }


def test_analyze_prints_the_statistics(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "batch_2.csv", [1.0, 2.0, 3.0])
    result = ok(
        "analyze.py", "--batch", "2", "--input", csv_path, "--out", "stats_2.json", cwd=tmp_path
    )
    assert "batch 2: count=3 mean=2.000 stdev=1.000 min=1.000 max=3.000" in result.stdout
    assert "batch 2: p50=2.000 p95=2.900" in result.stdout


# --- report ----------------------------------------------------------------------------------


def test_report_aggregates_batches_sorted_with_totals(tmp_path: Path) -> None:
    stats_files = []
    per_batch = {}
    for batch, rows in ((3, 40), (1, 60), (2, 25)):
        csv_path = generate(tmp_path, "r0123456789a", batch, rows)
        per_batch[batch] = analyze(tmp_path, batch, csv_path)
        stats_files.append(tmp_path / f"stats_{batch}.json")
    all_values = [v for b in (1, 2, 3) for v in read_values(tmp_path / f"batch_{b}.csv")]

    result = ok(
        "report.py", "--run-id", "r0123456789a", "--out", "report.json", *stats_files, cwd=tmp_path
    )
    report = json.loads((tmp_path / "report.json").read_text())

    assert report["run_id"] == "r0123456789a"
    generated_at = datetime.fromisoformat(report["generated_at"])
    offset = generated_at.utcoffset()
    assert offset is not None
    assert offset.total_seconds() == 0
    assert report["batches"] == [per_batch[1], per_batch[2], per_batch[3]]
    totals = report["totals"]
    assert totals["batches"] == 3
    assert totals["count"] == 125
    assert totals["sum"] == pytest.approx(math.fsum(all_values))
    assert totals["mean"] == pytest.approx(statistics.fmean(all_values))
    assert totals["min"] == min(all_values)
    assert totals["max"] == max(all_values)
    assert "3 batches, 125 rows" in result.stdout


# --- bad input -------------------------------------------------------------------------------


def _bad_cases(tmp: Path) -> list[tuple[list[str | Path], str]]:
    good_csv = write_csv(tmp / "good.csv", [1.0, 2.0])
    (tmp / "text.csv").write_text("row,value\n1,abc\n")
    (tmp / "nocol.csv").write_text("row,amount\n1,2.0\n")
    (tmp / "empty.csv").write_text("row,value\n")
    (tmp / "broken.json").write_text("{not json")
    (tmp / "partial.json").write_text(json.dumps({"batch": 1, "count": 3, "sum": 1.0}))
    stats = tmp / "stats_1.json"
    stats.write_text(
        json.dumps(
            {
                "batch": 1,
                "count": 2,
                "sum": 3.0,
                "mean": 1.5,
                "stdev": 0.7,
                "min": 1.0,
                "max": 2.0,
                "p50": 1.5,
                "p95": 1.95,
            }
        )
    )
    gen: list[str | Path] = ["generate.py", "--run-id", "r1", "--out", tmp / "out.csv"]
    ana: list[str | Path] = ["analyze.py", "--out", tmp / "out.json"]
    rep: list[str | Path] = ["report.py", "--run-id", "r1", "--out", tmp / "report.json"]
    return [
        ([*gen, "--batch", "0", "--rows", "5"], "--batch must be 1 or more"),
        ([*gen, "--batch", "1", "--rows", "-5"], "--rows must be 1 or more"),
        ([*gen, "--batch", "1", "--rows", "5", "--seconds", "-1"], "--seconds must be 0 or more"),
        ([*gen, "--batch", "x", "--rows", "5"], "invalid int value"),
        ([*ana, "--batch", "1", "--input", tmp / "missing.csv"], "no such file"),
        ([*ana, "--batch", "0", "--input", good_csv], "--batch must be 1 or more"),
        ([*ana, "--batch", "1", "--input", good_csv, "--seconds", "-2"], "--seconds must be"),
        ([*ana, "--batch", "1", "--input", tmp / "text.csv"], "not a number: 'abc'"),
        ([*ana, "--batch", "1", "--input", tmp / "nocol.csv"], "no 'value' column"),
        ([*ana, "--batch", "1", "--input", tmp / "empty.csv"], "no rows"),
        (rep, "no stats files given"),
        ([*rep, tmp / "missing.json"], "no such file"),
        ([*rep, tmp / "broken.json"], "not a stats file"),
        ([*rep, tmp / "partial.json"], "'mean' must be a finite number"),
        ([*rep, stats, stats], "batch 1 appears twice"),
    ]


def test_bad_input_exits_2_with_a_message_and_no_traceback(tmp_path: Path) -> None:
    cases = _bad_cases(tmp_path)
    for argv, expected in cases:
        script, *args = argv
        result = run(str(script), *args, cwd=tmp_path)
        assert result.returncode == 2, (argv, result.stdout, result.stderr)
        assert expected in result.stderr, (argv, result.stderr)
        assert "Traceback" not in result.stderr, (argv, result.stderr)
    assert not (tmp_path / "out.csv").exists()
    assert not (tmp_path / "report.json").exists()


def test_unwritable_output_exits_2(tmp_path: Path) -> None:
    result = run(
        "generate.py",
        "--run-id",
        "r1",
        "--batch",
        "1",
        "--rows",
        "3",
        "--out",
        tmp_path / "no-such-dir" / "batch_1.csv",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "cannot write" in result.stderr
    assert "Traceback" not in result.stderr


def test_scripts_run_from_path_like_in_a_task(tmp_path: Path) -> None:
    # Nextflow puts bin/ on PATH and calls `generate.py ...`: the shebang and +x must work.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        ["generate.py", "--run-id", "r1", "--batch", "1", "--rows", "2", "--out", "b.csv"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "b.csv").read_text().startswith("row,value\n")
