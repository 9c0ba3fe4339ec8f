"""The console script's server: the app under uvicorn, with the one line that says where.

Imported by `__main__` only once the flags and settings are good, so that `--help`,
`--version` and a refused setting answer without loading the app (a fifth of a second each).
"""

from __future__ import annotations

import os
import socket

import uvicorn

from nextflow_k8s_service import PROG, __version__
from nextflow_k8s_service.config import PACKAGE_DIR, Settings
from nextflow_k8s_service.main import create_app
from nextflow_k8s_service.server import ServiceServer, server_config


def announce(host: str, port: int, mode: str = "") -> None:
    """The one start line: where the page and the API docs are."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    print(f"{PROG} {__version__}{mode}: page {base}/  API docs {base}/docs", flush=True)


class _ConsoleServer(ServiceServer):
    """The service's server that announces where it listens once it does."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            announce(self.config.host, self.config.port)


def _reload(settings: Settings) -> None:
    """Development server: uvicorn's reloader builds the app in a child process, from the
    environment, so the flags travel there as environment variables."""
    os.environ.update(
        HOST=settings.host,
        PORT=str(settings.port),
        LOG_LEVEL=settings.log_level,
        WORKSPACE_DIR=str(settings.workspace_dir),
        WORKFLOW_DIR=str(settings.workflow_dir),
    )
    announce(settings.host, settings.port, " (reload)")
    uvicorn.run(
        "nextflow_k8s_service.main:create_app",
        factory=True,
        reload=True,
        reload_dirs=[str(PACKAGE_DIR)],
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
    )


def serve(settings: Settings, *, reload: bool = False) -> None:
    """Serve until stopped (SIGINT/SIGTERM drain first: `ServiceServer`)."""
    if reload:
        _reload(settings)
        return
    app = create_app(settings)
    config = server_config(app, settings)
    _ConsoleServer(config, app=app).run()
