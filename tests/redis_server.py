"""A throw-away `redis-server` for tests: a free port, no persistence, its own directory.

Never touches the Redis a developer may run on 6379. `RedisServer.start(directory)` blocks
until the server answers PING; `stop()` and `restart()` (same port, empty data, as after a
crash of a server without persistence) let tests exercise outages.

    server = RedisServer.start(tmp_path)      # or pytest.skip / fail via require_binary()
    ... server.url ...
    server.stop()
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0


def require_binary() -> str:
    """Path of `redis-server`; skips the test without it, or fails it if REQUIRE_SERVICES=1."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}, and REQUIRE_SERVICES=1")
        pytest.skip(reason)
    return binary


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One `redis-server` process on `HOST:port`; see the module docstring."""

    def __init__(self, *, binary: str, port: int, directory: Path) -> None:
        self.binary = binary
        self.host = HOST
        self.port = port
        self.directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, directory: Path) -> RedisServer:
        """Start a server in `directory` on a free port (skips or fails without the binary)."""
        directory.mkdir(parents=True, exist_ok=True)
        server = cls(binary=require_binary(), port=free_port(), directory=directory)
        server.resume()
        return server

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def resume(self) -> None:
        """(Re)start the process on the same port and wait until it answers PING."""
        if self.running:
            return
        log = (self.directory / "redis-server.log").open("ab")
        with log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(self.port),
                    "--bind", self.host,
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.directory),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not _answers_ping(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                output = (self.directory / "redis-server.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{output}")
            time.sleep(0.05)  # polling a port that has no event to await

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL); its data is gone (no persistence)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGCONT)  # a frozen server cannot handle SIGTERM
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def freeze(self) -> None:
        """Pause the process (SIGSTOP): connections stay open and nothing answers, as in a
        long stall of the server or the network."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """Resume a frozen process (SIGCONT); it answers everything sent meanwhile."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGCONT)

    def restart(self) -> None:
        """Stop and start again on the same port, empty."""
        self.stop()
        self.resume()
