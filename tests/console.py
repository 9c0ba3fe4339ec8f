"""The console script as a user starts it: a child process, its announce line, a clean stop.

`ConsoleService.start(command, cwd=..., env=...)` returns once the process printed the line with
its page and docs URLs (it then listens); `stop()` sends SIGTERM and awaits the exit.
`module_service(env)` is the synchronous form for sync tests: `python -m nextflow_k8s_service`,
answering `/health`, stopped on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from nextflow_k8s_service.config import Settings
from tests.redis_server import free_port

ANNOUNCE = re.compile(r"page (http://\S+/)\s+API docs (http://\S+/docs)")
STOP_SECONDS = 20.0


__all__ = ["ConsoleService", "bare_environment", "free_port", "module_service"]


def bare_environment(port: int) -> dict[str, str]:
    """This process's environment without a single setting of the service, and PORT.

    Whatever the caller exported (WORKSPACE_DIR, WORKFLOW_DIR, pacing, …) is dropped, and so is
    the virtual environment of the test run, so that `uv run` picks the project's own.
    """
    names = {name.upper() for name in Settings.model_fields}
    names |= {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"}
    env = {key: value for key, value in os.environ.items() if key.upper() not in names}
    env["PORT"] = str(port)
    return env


class ConsoleService:
    """A console-script process in its own session (so a stop reaches `uv run`'s child too)."""

    def __init__(self, process: asyncio.subprocess.Process, stderr: Path, page: str, docs: str):
        self.process = process
        self.stderr = stderr
        self.http_url = page.rstrip("/")
        self.docs_url = docs

    @classmethod
    async def start(
        cls, command: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 180
    ) -> ConsoleService:
        """Start `command` and return once it announced its URLs (it then listens)."""
        stderr = cwd.parent / f"{cwd.name}-service.stderr"
        with stderr.open("wb") as errors:
            process = await asyncio.create_subprocess_exec(
                *command,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=errors,
                start_new_session=True,
            )
        assert process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while line := (await process.stdout.readline()).decode():
                    if match := ANNOUNCE.search(line):
                        return cls(process, stderr, match.group(1), match.group(2))
        except BaseException:
            await cls._kill(process)
            raise
        await process.wait()
        raise AssertionError(
            f"{command} exited with {process.returncode} before serving:\n{stderr.read_text()}"
        )

    async def stop(self) -> int:
        """SIGTERM to the whole session, then its exit code (SIGKILL after STOP_SECONDS)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_SECONDS):
                return await self.process.wait()
        except TimeoutError:
            await self._kill(self.process)
            raise

    @staticmethod
    async def _kill(process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


@contextlib.contextmanager
def module_service(
    env: dict[str, str], *, timeout: float = 30.0
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m nextflow_k8s_service` with `env` (which must set PORT), once `/health`
    answers: the process and its base URL. Terminated (if still alive) and reaped on exit."""
    process = subprocess.Popen([sys.executable, "-m", "nextflow_k8s_service"], env=env)
    url = f"http://127.0.0.1:{env['PORT']}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the service did not start")
            time.sleep(0.1)  # polling a port: there is no event to await
        yield process, url
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)
