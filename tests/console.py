"""The console script as a user starts it: a child process, its announce line, a clean stop.

`ConsoleService.start(command, cwd=..., env=...)` returns once the process printed the line with
its page and docs URLs (it then listens); `stop()` sends SIGTERM and awaits the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
from pathlib import Path

from nextflow_k8s_service.config import Settings

ANNOUNCE = re.compile(r"page (http://\S+/)\s+API docs (http://\S+/docs)")
STOP_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
