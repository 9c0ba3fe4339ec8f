"""Console script `nextflow-k8s-service`: serve the app with uvicorn, configured by Settings.

Command-line flags override the environment (and `.env`); everything else is an environment
variable (README, Configuration). Bad flags or settings exit with code 2 and one line.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

import uvicorn

from nextflow_k8s_service import __version__
from nextflow_k8s_service.config import PACKAGE_DIR, Settings, check_directories, load_settings
from nextflow_k8s_service.errors import ConfigurationError
from nextflow_k8s_service.main import create_app
from nextflow_k8s_service.server import ServiceServer, server_config

PROG = "nextflow-k8s-service"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve the Nextflow scatter-gather demo: the page at /, the API under "
        "/api/v1 and its docs at /docs. Every other setting is an environment variable "
        "(see the README); flags override the environment.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--host", help="interface to listen on (env HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (env PORT, default 8000)")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"],
        help="logging level (env LOG_LEVEL, default INFO)",
    )
    parser.add_argument(
        "--reload",
        action="store_true",
        help="development: restart when the package's code changes (no drain step)",
    )
    return parser.parse_args(argv)


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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    flags = {
        name: value
        for name, value in (("host", args.host), ("port", args.port), ("log_level", args.log_level))
        if value is not None
    }
    try:
        settings = load_settings(**flags)
        check_directories(settings)
    except ConfigurationError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.reload:
        _reload(settings)
        return
    app = create_app(settings)
    config = server_config(app, settings)
    _ConsoleServer(config, app=app).run()


if __name__ == "__main__":
    main()
