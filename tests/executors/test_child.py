"""Subprocesses started off the event loop: output, exit code, and start failures."""

from __future__ import annotations

import gc
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


async def test_a_finished_childs_pipes_are_closed_once_and_only_once(tmp_path: Path) -> None:
    child = await spawn(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=dict(os.environ), limit=1024
    )
    await child.stdout.read()
    await child.stderr.read()
    await child.wait()
    child.close_pipes()  # idempotent
    # New descriptors most likely reuse the numbers the child's pipes had: nothing of the
    # child may close them later (as a collected pipe file object would).
    reused = os.pipe()
    try:
        del child
        gc.collect()
        for fd in reused:
            os.fstat(fd)
    finally:
        for fd in reused:
            os.close(fd)


async def test_a_child_leads_its_own_group_in_the_services_session_at_the_niceness_asked(
    tmp_path: Path,
) -> None:
    niceness = max(os.nice(0), 7)
    report = "import os; print(os.nice(0), os.getpgid(0) == os.getpid(), os.getsid(0))"
    child = await spawn(
        [sys.executable, "-c", report], cwd=tmp_path, env={}, limit=1024, niceness=niceness
    )
    out = await child.stdout.read()
    assert await child.wait() == 0
    nice, leads_group, session = out.decode().split()
    # Its own group, so a run can signal it whole; the service's session, so that a nice
    # value counts under autogroup scheduling (a new session would be a group of its own).
    assert (int(nice), leads_group, int(session)) == (niceness, "True", os.getsid(0))


async def test_a_niceness_below_the_childs_own_leaves_it_alone(tmp_path: Path) -> None:
    own = os.nice(0)
    child = await spawn(
        [sys.executable, "-c", "import os; print(os.nice(0))"],
        cwd=tmp_path,
        env={},
        limit=1024,
        niceness=own - 1,
    )
    assert int(await child.stdout.read()) == own
    assert await child.wait() == 0


async def test_without_a_niceness_the_child_keeps_the_services(tmp_path: Path) -> None:
    child = await spawn(
        [sys.executable, "-c", "import os; print(os.nice(0))"], cwd=tmp_path, env={}, limit=1024
    )
    assert int(await child.stdout.read()) == os.nice(0)
    assert await child.wait() == 0
