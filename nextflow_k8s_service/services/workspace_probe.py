"""Readiness of the workspace: can this replica write (local mode) or read (Kubernetes mode) it?

File-system calls cannot be cancelled, and on a network volume they can hang for minutes. The
probe therefore runs in its own daemon thread, the caller waits at most its deadline, and a
probe still hanging from an earlier check is reported instead of starting another one: a
stuck volume costs one thread, not one per readiness probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path

from nextflow_k8s_service.models import CheckResult


def _probe(directory: Path, writable: bool) -> None:
    """Raise OSError unless `directory` is usable: a file written and removed, or (read-only)
    the directory listed; a directory that does not exist yet has nothing to read."""
    if not writable:
        with contextlib.suppress(FileNotFoundError):
            os.listdir(directory)
        return
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=".readiness-", suffix=".tmp")
    try:
        os.write(fd, b"ok")
    finally:
        os.close(fd)
        os.unlink(name)


class WorkspaceProbe:
    """Checks `directory`: writable when `writable`, else readable. At most one probe runs."""

    def __init__(self, directory: Path, *, writable: bool) -> None:
        self.directory = directory
        self.writable = writable
        self._running_since: float | None = None
        self._lock = threading.Lock()

    async def check(self, deadline: float) -> CheckResult:
        """The check's result within `deadline` seconds (not ok when it takes longer)."""
        with self._lock:
            if self._running_since is not None:
                hung = time.monotonic() - self._running_since
                return CheckResult(
                    ok=False, detail=f"{self.directory}: probe hung for {hung:.0f} s"
                )
            self._running_since = time.monotonic()
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[None] = loop.create_future()
        # Retrieve the outcome even when nobody waits for it any more (deadline passed).
        outcome.add_done_callback(lambda done: done.cancelled() or done.exception())
        thread = threading.Thread(
            target=self._run, args=(loop, outcome), name="workspace-probe", daemon=True
        )
        thread.start()
        what = "writable" if self.writable else "readable"
        try:
            async with asyncio.timeout(deadline):
                await asyncio.shield(outcome)
        except TimeoutError:
            return CheckResult(ok=False, detail=f"{self.directory}: no answer within {deadline} s")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            return CheckResult(ok=False, detail=f"{self.directory}: not {what}: {reason}")
        return CheckResult(ok=True, detail=f"{self.directory} is {what}")

    def _run(self, loop: asyncio.AbstractEventLoop, outcome: asyncio.Future[None]) -> None:
        error: OSError | None = None
        try:
            _probe(self.directory, self.writable)
        except OSError as exc:
            error = exc
        finally:
            with self._lock:
                self._running_since = None

        def deliver() -> None:
            if outcome.done():
                return
            if error is None:
                outcome.set_result(None)
            else:
                outcome.set_exception(error)

        # The loop may be gone by the time a hung probe returns; nobody waits then.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(deliver)
