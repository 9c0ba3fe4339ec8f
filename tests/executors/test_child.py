"""Subprocesses started off the event loop: output, exit code, and start failures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from nextflow_k8s_service.executors.child import spawn

SCRIPT = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"


async def _run_to_end(tmp_path: Path) -> tuple[bytes, bytes, int, int | None]:
    child = await spawn(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=dict(os.environ), limit=1024
    )
    out = await child.stdout.read()
    err = await child.stderr.read()
    code = await child.wait()
    return out, err, code, child.returncode


async def test_output_and_exit_code_of_a_child(tmp_path: Path) -> None:
    out, err, code, returncode = await _run_to_end(tmp_path)
    assert (out, err, code, returncode) == (b"out\n", b"err\n", 3, 3)


async def test_without_pidfd_a_thread_waits_for_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(pid: int) -> int:
        raise OSError("pidfd_open not available")

    monkeypatch.setattr(os, "pidfd_open", unavailable, raising=False)
    out, _, code, _ = await _run_to_end(tmp_path)
    assert (out, code) == (b"out\n", 3)


async def test_a_child_that_cannot_start_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await spawn([sys.executable, "-c", "pass"], cwd=tmp_path / "missing", env={}, limit=1024)
