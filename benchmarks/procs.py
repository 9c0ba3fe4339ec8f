"""Child processes of the harness: servers, the client harness, and an RSS sampler.

Every child is started with the harness's own interpreter (the project's virtualenv), gets a
bounded time to start, and is stopped (quit / SIGTERM, then SIGKILL) when its block exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

from benchmarks.serve import RATE_LIMITS

T = TypeVar("T")
HOST = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
REPLY_TIMEOUT = 400.0
REPO = Path(__file__).resolve().parent.parent


LOG_DIR = Path(tempfile.gettempdir()) / "nks-benchmarks"


async def _spawn(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """Start a child; its stderr goes to a log file in LOG_DIR, quoted if it fails."""
    LOG_DIR.mkdir(exist_ok=True)
    name = "-".join(a for a in args[:3] if not a.startswith("-")).replace("/", "_")[:60]
    log = LOG_DIR / f"{name}-{next(_SPAWNED)}.log"
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, **(env or {})},
        )
    _LOGS[proc.pid] = log
    return proc


_LOGS: dict[int, Path] = {}
_SPAWNED = itertools.count()


def _tail(pid: int) -> str:
    log = _LOGS.get(pid)
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-2000:]


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def _line(proc: asyncio.subprocess.Process, timeout: float) -> bytes:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not line:
        code = await proc.wait()
        raise RuntimeError(f"child {proc.pid} exited (code {code}):\n{_tail(proc.pid)}")
    return line


async def runs(concurrent: bool, factories: list[Callable[[], Awaitable[T]]]) -> list[T]:
    """Await each factory's run in turn, or all at once when `concurrent` (smoke mode, where
    the numbers mean nothing and only the harness is checked)."""
    if concurrent:
        return list(await asyncio.gather(*(factory() for factory in factories)))
    return [await factory() for factory in factories]


class FanoutServer:
    """`python -m benchmarks.serve KIND`: a server with a publish command on stdin."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/api/v1/pipeline/stream"

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def publish(self, **command: Any) -> dict[str, Any]:
        return await self.command("publish", **command)

    async def cpu_seconds(self) -> float:
        """The server's own CPU time so far, read inside it at nanosecond resolution."""
        return float((await self.command("cpu"))["seconds"])

    async def command(self, name: str, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": name, **command}).encode() + b"\n")
        await self.proc.stdin.drain()
        reply: dict[str, Any] = json.loads(await _line(self.proc, REPLY_TIMEOUT))
        return reply


@asynccontextmanager
async def fanout_server(kind: str, workspace: Path, *args: str) -> AsyncIterator[FanoutServer]:
    proc = await _spawn("-m", "benchmarks.serve", kind, "--workspace", str(workspace), *args)
    try:
        hello = json.loads(await _line(proc, START_TIMEOUT))
        yield FanoutServer(proc, int(hello["port"]))
    finally:
        if proc.stdin is not None and proc.returncode is None:
            with contextlib.suppress(Exception):
                proc.stdin.write(b'{"cmd": "quit"}\n')
                await proc.stdin.drain()
                proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        await _stop(proc)


class Service:
    """The service as shipped: the `nextflow-k8s-service` console script's entry point."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/api/v1/pipeline/stream"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def service(workspace: Path, **env: str) -> AsyncIterator[Service]:
    """Run `python -m nextflow_k8s_service` (what `uv run nextflow-k8s-service` runs) with
    zero pacing unless `env` says otherwise; yields once /health answers."""
    port = free_port()
    settings = {
        "HOST": HOST,
        "PORT": str(port),
        "WORKSPACE_DIR": str(workspace),
        "DEMO_GENERATE_SECONDS": "0",
        "DEMO_ANALYZE_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
        **{name.upper(): str(value) for name, value in RATE_LIMITS.items()},
        **env,
    }
    proc = await _spawn("-m", "nextflow_k8s_service", env=settings)
    try:
        running = Service(proc, port)
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(base_url=running.http_url, timeout=2) as client:
            while True:
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError("the service did not start")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/health")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield running
    finally:
        await _stop(proc)


class Clients:
    """`python -m benchmarks.ws_clients`: ready once every client has its first frame."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def result(self, timeout: float) -> dict[str, Any]:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        summary: dict[str, Any] = json.loads(await _line(self.proc, timeout))
        return summary


@asynccontextmanager
async def clients(url: str, *args: str) -> AsyncIterator[Clients]:
    proc = await _spawn("-m", "benchmarks.ws_clients", url, *args)
    try:
        ready = await _line(proc, START_TIMEOUT)
        if ready.strip() != b"READY":
            raise RuntimeError(f"client harness: {ready!r}")
        yield Clients(proc)
    finally:
        await _stop(proc)


class RssSampler:
    """Samples a process's resident set size every `interval` seconds while running."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self.samples: list[int] = []
        self._task: asyncio.Task[None] | None = None

    def rss(self) -> int:
        rss: int = self._process.memory_info().rss
        return rss

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                self.samples.append(self.rss())
            await asyncio.sleep(self._interval)

    async def __aenter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._run(), name="rss-sampler")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)


async def settled_rss(pid: int, samples: int = 5, interval: float = 0.2) -> int:
    """The median of a few RSS readings, after the process has had a moment to settle."""
    process = psutil.Process(pid)
    readings = []
    for _ in range(samples):
        await asyncio.sleep(interval)
        readings.append(process.memory_info().rss)
    return sorted(readings)[len(readings) // 2]
