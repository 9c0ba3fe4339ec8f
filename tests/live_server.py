"""A real uvicorn server for tests, running the app in the test's event loop.

    server = await LiveServer.start(create_app(settings))
    ... server.http_url / server.ws_url ...
    await server.stop()

`start` returns once uvicorn has run the lifespan and listens; `port` may be given to bring a
server back on the port of one that was stopped (restart scenarios).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from nextflow_k8s_service.server import ServiceServer, server_config

HOST = "127.0.0.1"


class _StartedServer(ServiceServer):
    def __init__(self, config: uvicorn.Config, *, app: FastAPI) -> None:
        super().__init__(config, app=app)
        self.started_event = asyncio.Event()
        self.stopped_event = asyncio.Event()
        self.exit_requested = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.started_event.set()

    async def main_loop(self) -> None:
        # uvicorn looks at `should_exit` every 0.1 s; a test's server is stopped only by
        # `LiveServer.stop`, which sets this event, so a stop does not wait for the next tick.
        await self.on_tick(0)
        await self.exit_requested.wait()

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().serve(sockets)
        finally:
            self.stopped_event.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Tests share the loop and the process: leave SIGINT/SIGTERM handling to pytest.
        yield


class LiveServer:
    def __init__(self, app: FastAPI, server: _StartedServer, task: asyncio.Task[None], port: int):
        self.app = app
        self._server = server
        self._task = task
        self.port = port

    @classmethod
    async def start(cls, app: FastAPI, *, port: int = 0) -> LiveServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        bound_port = sock.getsockname()[1]
        config = server_config(
            app, app.state.settings, log_level="warning", timeout_graceful_shutdown=5
        )
        server = _StartedServer(config, app=app)
        task = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn-{bound_port}")
        started = asyncio.create_task(server.started_event.wait())
        done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            started.cancel()
            task.result()
            raise RuntimeError("uvicorn exited during start-up")
        return cls(app, server, task, bound_port)

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/api/v1/pipeline/stream"

    async def drain(self) -> None:
        """The first step of a graceful shutdown: refuse new work, close streams with 1001."""
        await self._server.drain()

    async def stop(self) -> None:
        """Graceful shutdown, as on SIGTERM (idempotent)."""
        self._server.should_exit = True
        self._server.exit_requested.set()
        await self._task
