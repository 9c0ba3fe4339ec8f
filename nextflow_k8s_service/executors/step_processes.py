"""Step processes that cannot outlive the service (local executor, Linux).

Steps lead their own process groups so that a run can signal each step's group; that also means
nothing ends them when the service itself is killed (SIGKILL, OOM). Two measures close that gap:

- `step_command` starts each step through a tiny launcher that asks the kernel for a parent-
  death signal (`prctl(PR_SET_PDEATHSIG, SIGKILL)`) and then `exec`s the step, so a step dies
  with the service's process. The launcher exits at once if the service died before the
  request took effect.
- `sweep_leftover_steps` kills, at start-up, step processes of a previous incarnation of the
  service that are still running in its work directory (e.g. on a system without prctl).

Elsewhere the command is the step itself and the sweep finds nothing (`/proc` is Linux's).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

# argv: parent pid, then the command to exec. PR_SET_PDEATHSIG is 1 (linux/prctl.h).
_LAUNCHER = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
if os.getppid() != int(sys.argv[1]):
    sys.exit(70)
os.execv(sys.argv[2], sys.argv[2:])
"""

_PROC = Path("/proc")


def step_command(script: Path, args: Iterable[str]) -> list[str]:
    """The argv that runs `script` with `args` under this interpreter, tied to this process."""
    command = [sys.executable, str(script), *args]
    if not sys.platform.startswith("linux"):
        return command
    # -I -S: the launcher imports nothing from the environment or site-packages, and is fast.
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()), *command]


def _processes() -> Iterator[tuple[int, list[str], str]]:
    """(pid, argv, working directory) of every process this user may inspect."""
    try:
        entries = os.listdir(_PROC)
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            raw = (_PROC / entry / "cmdline").read_bytes()
            cwd = os.readlink(_PROC / entry / "cwd")
        except OSError:
            continue  # gone, a kernel thread, or another user's
        yield int(entry), raw.decode(errors="replace").split("\0"), cwd


def _parent_of(pid: int) -> int | None:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name: state, ppid, ...
    return int(stat.rsplit(")", 1)[1].split()[1])


def sweep_leftover_steps(scripts: Iterable[Path], work_root: Path) -> list[int]:
    """SIGKILL every process running one of `scripts` in a directory under `work_root` that
    is not a child of this process; returns their pids. A local-mode workspace belongs to
    one service, so such a process is a step of a run that service can no longer follow."""
    targets = {str(script) for script in scripts}
    root = os.path.abspath(work_root) + os.sep
    killed = []
    for pid, argv, cwd in _processes():
        if len(argv) < 2 or argv[1] not in targets or not cwd.startswith(root):
            continue
        if pid == os.getpid() or _parent_of(pid) == os.getpid():
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # Steps lead their own process group: end it whole.
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    if killed:
        logger.warning(
            "killed %d step processes left over from an earlier run of the service in %s",
            len(killed),
            work_root,
        )
    return killed
