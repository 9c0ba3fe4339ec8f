"""Subprocesses started off the event loop, read and awaited on it.

`asyncio.create_subprocess_exec` forks on the event loop thread; under uvloop that is a
blocking fork/exec of the whole service process (6 to 29 ms each here), so starting twelve steps
at once stalled every client of the replica for a few hundred milliseconds. `spawn` runs
`subprocess.Popen` in a worker thread instead, then reads the child's pipes on the loop into
`StreamReader`s. Its exit is awaited through a pidfd (Linux 5.3 or later) or, elsewhere, a
thread that waits for it.

Off the loop is not enough when the children are busy: a step is a Python interpreter that
spends its first ~30 ms of CPU starting up, so twelve of them starting at once on a small
machine outnumber the service's event loop thread for the CPU, and the loop wakes up late by
tens of milliseconds. A child can be given a lower CPU priority (`niceness`) for that. Each
child leads a new process group (so its whole group can be signalled) but stays in the
service's session: under autogroup scheduling (Linux's default on many distributions) every
session is a scheduling group of its own that weighs as much as the service's, whatever the
nice values of the processes in it.

The pipes are made here and their read ends are owned by `_PipeReader` alone, which closes
each exactly once. (Handing `Popen`'s own pipe file objects to `loop.connect_read_pipe` is
not safe under uvloop: the transport closes the descriptor, the file object closes the same
number again when collected, and by then that number may belong to another step's pipe.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path

READ_CHUNK = 65536


class _PipeReader:
    """Feeds what arrives on a pipe's read end (owned: closed once, here) into a StreamReader."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, limit: int) -> None:
        self.stream = asyncio.StreamReader(limit=limit, loop=loop)
        self._loop = loop
        self._fd = fd
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            self.stream.set_exception(exc)
            self.close()
            return
        if data:
            self.stream.feed_data(data)
        else:
            self.close()

    def close(self) -> None:
        """Stop reading and close the pipe; the stream then ends (EOF)."""
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
        self.stream.feed_eof()


class Child:
    """A running subprocess with its stdout and stderr as `StreamReader`s."""

    def __init__(
        self, popen: subprocess.Popen[bytes], stdout: _PipeReader, stderr: _PipeReader
    ) -> None:
        self._popen = popen
        self._pipes = (stdout, stderr)
        self.stdout = stdout.stream
        self.stderr = stderr.stream
        self._exited: asyncio.Future[int] | None = None

    def close_pipes(self) -> None:
        """Stop reading the child's output (done by itself at EOF; idempotent)."""
        for pipe in self._pipes:
            pipe.close()

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the child has been reaped (by `wait`), else None."""
        return self._popen.returncode

    def send_signal(self, signum: signal.Signals) -> None:
        if self._popen.returncode is None:
            self._popen.send_signal(signum)

    async def wait(self) -> int:
        """The exit code, once the child has exited (it is reaped then). Cancelling the wait
        leaves the child alone."""
        if self._popen.returncode is not None:
            return self._popen.returncode
        if self._exited is None:
            self._exited = self._watch_exit()
        return await asyncio.shield(self._exited)

    def _watch_exit(self) -> asyncio.Future[int]:
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[int] = loop.create_future()

        def reaped(code: int) -> None:
            if not exited.done():
                exited.set_result(code)

        try:
            pidfd = os.pidfd_open(self._popen.pid)
        except (AttributeError, OSError):
            # No pidfd (not Linux, or an old kernel): one thread per child waits for it.
            def wait_in_thread() -> None:
                code = self._popen.wait()
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(reaped, code)

            threading.Thread(target=wait_in_thread, name=f"wait-{self.pid}", daemon=True).start()
            return exited

        def readable() -> None:
            code = self._popen.poll()
            if code is None:
                return
            loop.remove_reader(pidfd)
            os.close(pidfd)
            reaped(code)

        loop.add_reader(pidfd, readable)
        return exited


async def spawn(
    args: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    limit: int,
    starter: Executor | None = None,
    niceness: int | None = None,
) -> Child:
    """Start `args` as the leader of a new process group, with stdin from /dev/null and stdout
    and stderr piped; raises `OSError` if it cannot be started. `starter` is the thread pool
    that runs `Popen` (default: the loop's); one thread is best: several would only compete
    with the event loop for the GIL. With `niceness`, the child's nice value is raised to it if
    it is lower (best effort: a child that already exited, or a system that refuses, is left
    as it is). If the caller is cancelled while the child is being started, the child is
    killed and reaped before `CancelledError` goes on.
    """
    loop = asyncio.get_running_loop()
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()

    def start() -> subprocess.Popen[bytes]:
        popen = subprocess.Popen(
            list(args),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out_write,
            stderr=err_write,
            process_group=0,
        )
        if niceness is not None:
            _lower_priority(popen.pid, niceness)
        return popen

    starting = loop.run_in_executor(starter, start)
    try:
        try:
            popen = await asyncio.shield(starting)
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                orphan = await starting
                _kill_now(orphan)
                await asyncio.to_thread(orphan.wait)
            raise
        finally:
            # The child has its copies (or never started): the parent's write ends go, so
            # the read ends see EOF when the child's output ends.
            os.close(out_write)
            os.close(err_write)
    except BaseException:
        os.close(out_read)
        os.close(err_read)
        raise
    return Child(popen, _PipeReader(loop, out_read, limit), _PipeReader(loop, err_read, limit))


def _lower_priority(pid: int, niceness: int) -> None:
    # Unreaped, the child keeps its pid even if it exited already: no other process can be hit.
    with contextlib.suppress(OSError):
        if os.getpriority(os.PRIO_PROCESS, pid) < niceness:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)


def _kill_now(popen: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        popen.kill()
